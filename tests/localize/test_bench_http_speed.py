"""The http_speed benchmark runs end to end on tiny sizes against a real server and reports every figure. It
measures; no test asserts a speed."""
from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from localize.bench import BenchSizes, run_benchmarks

TINY = BenchSizes(batch=8, registered_users=16, repeats=2, warmup=1, http_clients=4, http_seconds=1.0,
                  http_open_seconds=1.0, http_warmup_seconds=0.5)
FIGURES = ["http_speed_engine_texts_per_second", "http_speed_rps", "http_speed_ratio", "http_speed_closed_p50_ms",
           "http_speed_closed_p99_ms", "http_speed_open_offered_rps", "http_speed_open_rps", "http_speed_open_p50_ms",
           "http_speed_open_p99_ms", "http_speed_engine_cpu_ms_per_text", "http_speed_server_cpu_ms_per_request",
           "http_speed_client_cpu_ms_per_request", "http_speed_cpu_ratio"]


@pytest.mark.e2e
def test_http_speed_reports_throughput_latency_and_cpu_against_the_engine(base):
    printed = io.StringIO()
    results = run_benchmarks(quick=True, only=["http_speed"], out=None, console=Console(file=printed, width=200),
                             sizes=TINY)
    assert "errors" not in results, results.get("errors")
    for key in FIGURES:
        value = results.get(key)
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, f"{key}={value!r}"
    assert results["http_speed_ratio"] == pytest.approx(
        results["http_speed_rps"] / results["http_speed_engine_texts_per_second"], rel=0.05)
    assert results["http_speed_requests"] > 0 and len(results["details"]["http_speed_rps_by_round"]) == 2
    assert "http_speed_ratio" in printed.getvalue() and ">= 0.8" in printed.getvalue()  # its goals are listed


def test_the_load_generator_pauses_its_collector_while_it_measures_and_restores_it():
    import gc

    from localize.bench.http_speed import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled() and gc.get_freeze_count() > 0
    assert gc.isenabled() and gc.get_freeze_count() == 0
