"""Process metrics: the engine counts hits, misses, evictions and resident adapters; several processes writing to
one PROMETHEUS_MULTIPROC_DIR add up in a scrape."""
from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families
from test_engine import _adapter

from localize import metrics
from localize.engine import Engine


def _samples(text: bytes | str) -> dict[tuple[str, tuple], float]:
    text = text.decode() if isinstance(text, bytes) else text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_engine_counts_hits_misses_evictions_and_resident_adapters(base):
    before = _samples(metrics.render())
    engine = Engine(base, capacity=2)
    adapters = {name: _adapter(base, "head", {}, ["a", "b"], seed=seed) for seed, name in enumerate("xyz")}
    engine.adapter("x", lambda: adapters["x"])
    engine.adapter("y", lambda: adapters["y"])
    engine.adapter("x", lambda: adapters["x"])  # a hit
    assert engine.resident("y") is adapters["y"]  # a hit that never loads
    engine.adapter("z", lambda: adapters["z"])  # evicts x, the least recently used
    engine.predict([(adapters["y"], "gold soars"), (adapters["z"], "oil slides")])
    after = _samples(metrics.render())

    def moved(name: str) -> float:
        return after.get((name, ()), 0.0) - before.get((name, ()), 0.0)

    assert moved("localize_adapter_cache_misses_total") == 3
    assert moved("localize_adapter_cache_hits_total") == 2
    assert moved("localize_adapter_evictions_total") == 1
    assert moved("localize_adapters_resident") == 2
    assert moved("localize_adapter_load_duration_seconds_count") == 3
    assert moved("localize_engine_passes_total") == 1
    assert moved("localize_engine_pass_rows_sum") == 2
    engine.evict("y")
    assert _samples(metrics.render())[("localize_adapters_resident", ())] == after[("localize_adapters_resident", ())] - 1


WRITER = """
from localize import metrics
metrics.count_predictions({("gold", "user"): %d})
metrics.observe_request("/tasks", "GET", 200, 0.01)
"""


def test_processes_sharing_a_multiprocess_folder_add_up(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for count in (3, 4):  # two server processes, one after the other
        subprocess.run([sys.executable, "-c", WRITER % count], env=env, check=True, timeout=60)
    scrape = subprocess.run([sys.executable, "-c", "import sys; from localize import metrics; "
                             "sys.stdout.write(metrics.render().decode())"],
                            env=env, check=True, timeout=60, capture_output=True, text=True).stdout
    samples = _samples(scrape)
    assert samples[("localize_predictions_total", (("source", "user"), ("task", "gold")))] == 7
    assert samples[("localize_http_requests_total", (("method", "GET"), ("route", "/tasks"), ("status", "2xx")))] == 2
