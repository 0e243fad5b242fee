"""The benchmark runs end to end on tiny sizes and reports its figures. It measures; no test asserts a speed."""
from __future__ import annotations

import io
import json
import math

import pytest
from rich.console import Console

from localize.bench import BENCHMARKS, BenchSizes, run_benchmarks

TINY = BenchSizes(batch=8, registered_users=16, repeats=1, warmup=1, load_adapters=5, distinct_user_counts=(1, 8),
                  fanout_users=80, fanout_distinct=5, fanout_scaling=(10, 80), fanout_head_sizes=(0,), fanout_burst=2,
                  fanout_repeats=1)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def test_bench_reports_mixed_batch_and_adapter_load(base, tmp_path):
    out = tmp_path / "bench.json"
    printed = io.StringIO()
    results = run_benchmarks(quick=True, only=["adapter_load", "mixed_batch"], out=out,
                             console=Console(file=printed, width=160), sizes=TINY)

    assert "errors" not in results
    for key in ["base_texts_per_second", "mixed_batch_texts_per_second", "mixed_batch_ratio",
                "mixed_batch_lora_top_texts_per_second", "mixed_batch_ratio_lora_top",
                "adapter_load_ms_p50", "adapter_load_ms_p95", "resident_adapter_bytes", "resident_adapters_max"]:
        assert _positive(results.get(key)), f"{key}={results.get(key)!r}"
    assert results["resident_adapters_max"] == (1 << 30) // results["resident_adapter_bytes"]
    assert "fanout_10000_seconds" not in results  # only the chosen benchmarks ran
    assert json.loads(out.read_text())["mixed_batch_ratio"] == results["mixed_batch_ratio"]
    text = printed.getvalue()
    assert "mixed_batch_ratio" in text and ">= 0.9" in text  # the table names each goal


def test_bench_refuses_unknown_names_and_bad_sizes():
    with pytest.raises(ValueError, match=r"\['nope'\] are not among"):
        run_benchmarks(quick=True, only=["nope"], out=None, console=Console(file=io.StringIO()))
    with pytest.raises(ValueError, match="registered_users=4 must be >= batch=8"):
        BenchSizes(batch=8, registered_users=4)
    assert set(BENCHMARKS) >= {"mixed_batch", "adapter_load", "fanout", "train", "cold_start"}


def test_bench_command_rejects_unknown_benchmark():
    from typer.testing import CliRunner

    from localize import cli

    result = CliRunner().invoke(cli.app, ["bench", "--only", "mixed_batch,nope"])
    assert result.exit_code == 2
    assert "nope" in result.output


def test_bench_report_has_the_curve_the_scaling_table_and_the_plot(base, tmp_path):
    """``--report``: speed.md with the goal table, the distinct-users curve (and its PNG) and the fan-out scaling."""
    results = run_benchmarks(quick=True, only=["mixed_batch", "fanout"], out=None,
                             console=Console(file=io.StringIO(), width=160), sizes=TINY, report=tmp_path)
    assert "errors" not in results
    curve = results["throughput_by_distinct_users"]
    assert set(curve) == {"base", "head", "lora_top"} and set(curve["head"]) == {"1", "8"}
    assert all(_positive(v) for points in curve.values() for v in points.values())
    assert set(results["fanout_seconds_by_users"]) == {"10", "80"}
    assert set(results["fanout_10000_seconds_by_head_hidden"]) == {"0 (frozen base)",
                                                                   "0 (default: on the task prior's encoder)"}
    assert _positive(results["fanout_burst_user_texts_per_second"])
    report = (tmp_path / "speed.md").read_text()
    assert "## Goals (issue 5)" in report and "fanout_10000_seconds" in report
    assert "## Fan-out time against number of users" in report and "| 80 |" in report
    assert "![throughput against distinct users per batch](throughput_by_distinct_users.png)" in report
    assert (tmp_path / "throughput_by_distinct_users.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "bench.json").read_text())["fanout_users_measured"] == 80
