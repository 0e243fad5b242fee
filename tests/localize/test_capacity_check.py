"""The capacity model against a simulated workload: the LRU miss model matches an LRU driven by Zipf draws, the
prediction covers every figure a simulate run measures, and ``localize capacity`` reads the latest kept bench runs,
plans other scales of the same workload shape, and sets prediction beside measurement."""
from __future__ import annotations

import json
from collections import OrderedDict

import numpy as np
import pytest

from localize.capacity import Figures, Workload, at_scale, latest_results
from localize.capacity_check import (
    expected_distinct,
    lru_misses,
    predict,
    working_set_bytes,
    zipf_probabilities,
)


def _lru_trace_misses(probabilities, cache: int, draws: int, seed: int) -> int:  # noqa: ANN001
    rng = np.random.default_rng(seed)
    resident: OrderedDict[int, None] = OrderedDict()
    misses = 0
    for user in np.searchsorted(np.cumsum(probabilities), rng.random(draws), side="right"):
        if user in resident:
            resident.move_to_end(user)
        else:
            misses += 1
            resident[user] = None
            if len(resident) > cache:
                resident.popitem(last=False)
    return misses


@pytest.mark.parametrize(("users", "exponent", "cache", "draws"), [
    (3000, 1.1, 300, 6000),  # the cache fills early: Che's steady state for most draws
    (3000, 0.8, 300, 2000),  # flatter, fills late
    (500, 1.1, 600, 3000),  # the cache never fills: only first draws miss
])
def test_lru_misses_match_an_lru_driven_by_zipf_draws(users, exponent, cache, draws):
    p = zipf_probabilities(users, exponent)
    measured = np.mean([_lru_trace_misses(p, cache, draws, seed) for seed in range(3)])
    assert lru_misses(p, cache, draws) == pytest.approx(measured, rel=0.1)
    if expected_distinct(p, draws) <= cache:
        assert lru_misses(p, cache, draws) == pytest.approx(expected_distinct(p, draws))


SIMULATED = {
    "simulate_users": 2000, "simulate_zipf": 1.1, "simulate_replicas": 2, "simulate_replica_adapters": 100,
    "simulate_user_draws": 4000, "simulate_seconds": 40.0, "simulate_rows": {"single": 1000, "batch": 2000,
                                                                             "fanout": 1000},
    "simulate_miss_ratio": 0.3, "simulate_adapter_loads_per_second": 30.0,
    "simulate_resident_adapters_by_replica": [100, 100], "simulate_replica_rss_bytes_mean": 600e6,
    "simulate_rows_per_cpu_second_per_replica": 60.0, "simulate_rows_per_second_per_replica": 40.0,
    "simulate_replica_cpu_share": [0.6, 0.7], "simulate_replica_base_bytes": 500e6,
    "simulate_engine_rows_per_pass": 8.0,
}


def test_the_prediction_covers_every_measured_figure_from_the_figures_alone():
    figures = Figures(replica_base_bytes=500e6, resident_adapter_bytes=1e6, serve_row_ms=20.0, fanout_row_ms=2.0,
                      adapter_load_ms=5.0, serve_pass_ms=40.0, replica_loaded_base_bytes=850e6, loaded_rows_per_pass=36)
    check = predict(SIMULATED, figures)
    assert set(check) == {"miss ratio", "adapter loads / s", "resident adapters / replica", "memory / replica (bytes)",
                          "rows / CPU-second / replica", "rows / s / replica (wall)"}
    miss = check["miss ratio"]["predicted"]
    assert 0 < miss < 1
    assert check["resident adapters / replica"]["predicted"] == 100  # 2,000 Zipf users fill 100 slots
    # Passes of 8 rows: a fifth of the way from passes of 1 row to passes of 36, so a fifth of the 350e6 excess.
    assert check["memory / replica (bytes)"]["predicted"] == pytest.approx(500e6 + 70e6 + 100 * 1e6)
    # 4,000 rows in passes of 8: 500 passes; fan-out rows cost their own figure; each miss a load.
    row_ms = (500 * 40.0 + 3000 * 20.0 + 1000 * 2.0 + miss * 4000 * 5.0) / 4000
    assert check["rows / CPU-second / replica"]["predicted"] == pytest.approx(1000 / row_ms)
    assert check["rows / s / replica (wall)"]["predicted"] == pytest.approx(1000 / row_ms * 0.65)
    assert check["miss ratio"]["error"] == pytest.approx(miss / 0.3 - 1)


def test_the_working_set_lies_between_the_two_measured_bases_and_stops_at_the_larger():
    figures = Figures(replica_base_bytes=500e6, replica_loaded_base_bytes=900e6, loaded_rows_per_pass=51)
    assert working_set_bytes(figures, 1) == 0
    assert working_set_bytes(figures, 26) == pytest.approx(200e6)
    assert working_set_bytes(figures, 51) == working_set_bytes(figures, 500) == pytest.approx(400e6)
    # a loaded base measured below the base (noise) adds nothing
    assert working_set_bytes(Figures(replica_base_bytes=500e6, replica_loaded_base_bytes=450e6), 40) == 0


def test_plans_at_scale_keep_the_rate_per_user():
    plans = at_scale(Workload(users=1_000_000, requests_per_second=1000), Figures())
    assert [p.workload.users for p in plans.values()] == [10_000, 100_000, 1_000_000]
    assert [p.workload.requests_per_second for p in plans.values()] == pytest.approx([10, 100, 1000])


def test_the_cli_reads_the_latest_kept_runs_and_checks_a_simulate_run(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from localize import cli
    from localize.settings import get_settings

    monkeypatch.setenv("LOCALIZE_HOME", str(tmp_path))
    get_settings.cache_clear()
    try:
        kept = tmp_path / "bench"
        kept.mkdir()
        (kept / "1-ray_fanout.json").write_text(json.dumps({"serve_rows_per_second_per_replica": 50.0,
                                                            "serve_row_ms": 20.0, "serve_fanout_row_ms": 2.0}))
        (kept / "2-simulate.json").write_text(json.dumps(SIMULATED))
        assert latest_results(tmp_path) == [kept / "1-ray_fanout.json", kept / "2-simulate.json"]
        result = CliRunner().invoke(cli.app, ["capacity", "--json", "--scale", "--check-latest"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["this workload"]["figures"]["predictions_per_second_per_replica"] == 50.0  # not the constant
        assert list(data["scale"]) == ["10,000 users", "100,000 users", "1,000,000 users"]
        assert data["check"]["memory / replica (bytes)"]["measured"] == 600e6
        table = CliRunner().invoke(cli.app, ["capacity", "--check", str(kept / "2-simulate.json")])
        assert table.exit_code == 0 and "| miss ratio |" in table.output and "largest term" in table.output
        missing = CliRunner().invoke(cli.app, ["capacity", "--check", str(kept / "1-ray_fanout.json")])
        assert missing.exit_code != 0 and "holds no simulate run" in missing.output
    finally:
        get_settings.cache_clear()
