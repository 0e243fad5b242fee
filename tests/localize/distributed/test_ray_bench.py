"""The Ray benchmarks (``localize bench --only ray_fanout,simulate``) run end to end on tiny sizes on this folder's
Ray cluster and report their figures. They measure; no test asserts a speed.

They live here, not beside tests/localize/test_bench.py, to share this folder's one Ray cluster."""
from __future__ import annotations

import io
import math

import pytest
import torch
from rich.console import Console

from localize.bench import BenchSizes, run_benchmarks

pytestmark = pytest.mark.ray

TINY = BenchSizes(batch=8, registered_users=16, repeats=1, warmup=0, fanout_repeats=1, ray_replica_cpus=0.25,
                  ray_fanout_users=40, ray_fanout_per_user_calls=10, ray_rows=16, ray_rows_few_in_flight=2,
                  simulate_users=60, simulate_replica_adapters=8,
                  simulate_seconds=6.0, simulate_requests=60, simulate_clients=2, simulate_batch_rows=4,
                  simulate_fanout_users=6, simulate_label_rows=4, simulate_mix_single=1.0, simulate_mix_batch=1.0,
                  simulate_mix_fanout=1.0, simulate_mix_labels=1.0)


def _positive(value) -> bool:  # noqa: ANN001
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_ray_fanout_and_the_simulated_workload_report_their_figures(ray_cluster, base):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = run_benchmarks(quick=True, only=["ray_fanout", "simulate"], out=None,
                                 console=Console(file=io.StringIO(), width=160), sizes=TINY)
    finally:
        torch.set_num_threads(previous)

    assert "errors" not in results, results.get("errors")
    for key in ["ray_fanout_seconds", "ray_fanout_embedded_seconds", "ray_fanout_vs_embedded",
                "ray_fanout_per_user_calls_seconds", "simulate_rows_per_second_per_replica", "simulate_p50_ms",
                "simulate_p99_ms", "simulate_adapter_loads", "simulate_replica_base_bytes",
                "simulate_replica_rss_bytes_mean", "simulate_stored_adapter_bytes"]:
        assert _positive(results.get(key)), f"{key}={results.get(key)!r}"
    # Both replicas answered the fan-out: its 40 users were split between them, every one resident. Usually each
    # once; but a request spills to its user's second replica when the first does not answer Serve's queue-length
    # probe in time (0.1 s, on a busy machine: seen once with 41), so a user can be resident on both.
    by_replica = results["ray_fanout_users_by_replica"]
    assert results["ray_fanout_replicas"] == 2 and min(by_replica) > 0 and max(by_replica) <= 40
    assert sum(by_replica) >= 40
    assert results["simulate_errors"] == 0 and results["simulate_stored_adapters"] == 60
    assert all(results["simulate_requests"][kind] > 0 for kind in ("single", "batch", "fanout"))
    # 8 resident adapters per replica for 60 Zipf users: some requests must load, none can load more than its users.
    assert 0 < results["simulate_miss_ratio"] <= 1
    assert max(results["simulate_resident_adapters_by_replica"]) <= 8
