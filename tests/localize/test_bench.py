"""The benchmark runs end to end on tiny sizes and reports its figures. It measures; no test asserts a speed."""
from __future__ import annotations

import dataclasses
import io
import json
import math

import pytest
import torch
from rich.console import Console

from localize.bench import BENCHMARKS, BenchSizes, run_benchmarks
from localize.bench.report import KEPT_MARKER, write_report

TINY = BenchSizes(batch=8, registered_users=16, repeats=1, warmup=1, load_adapters=5, distinct_user_counts=(1, 8),
                  fanout_users=80, fanout_distinct=5, fanout_scaling=(10, 80), fanout_head_sizes=(0,), fanout_burst=2,
                  fanout_repeats=1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The tiny benchmarks run on one intra-op thread: on a CPU shared with other test processes, two threads per
    small operation wait on each other (a single-row pass takes ten times longer), and the figures are not checked."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
    assert not text.lstrip().startswith("{") and '"details"' not in text  # a table, not the JSON


def test_bench_refuses_unknown_names_and_bad_sizes():
    with pytest.raises(ValueError, match=r"\['nope'\] are not among"):
        run_benchmarks(quick=True, only=["nope"], out=None, console=Console(file=io.StringIO()))
    with pytest.raises(ValueError, match="registered_users=4 must be >= batch=8"):
        BenchSizes(batch=8, registered_users=4)
    assert set(BENCHMARKS) >= {"mixed_batch", "adapter_load", "fanout", "train", "cold_start"}


def test_every_registered_benchmark_has_a_summary_and_unique_goals():
    from localize.bench import registered_benchmarks
    from localize.bench.registry import Benchmark, register_benchmark

    benchmarks = registered_benchmarks()
    assert tuple(benchmarks) == BENCHMARKS
    assert all(b.summary and callable(b.run) for b in benchmarks.values())
    metrics = [g.metric for b in benchmarks.values() for g in b.goals]
    assert len(metrics) == len(set(metrics))
    with pytest.raises(ValueError, match="'swap' is already registered"):
        register_benchmark(Benchmark("swap", benchmarks["swap"].run, "again"))


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
    assert "## Goals" in report and "fanout_10000_seconds" in report
    assert "## Fan-out time against number of users" in report and "| 80 |" in report
    assert "![throughput against distinct users per batch](throughput_by_distinct_users.png)" in report
    assert (tmp_path / "throughput_by_distinct_users.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "bench.json").read_text())["fanout_users_measured"] == 80
    # Sections measured apart from the bench, below the marker, survive the page being regenerated.
    (tmp_path / "speed.md").write_text(report + f"\n{KEPT_MARKER}\n\n## Measured by hand\n\nkept\n")
    write_report(results, tmp_path)
    again = (tmp_path / "speed.md").read_text()
    assert again.count("## Goals") == 1 and again.endswith(f"{KEPT_MARKER}\n\n## Measured by hand\n\nkept\n")


def test_bench_sizes_take_overrides_by_name_and_refuse_unknown_ones():
    sizes = BenchSizes().with_overrides(["load_seconds=5", "load_clients=4", "http_windows_ms=0,2", "naive_peft=false"])
    assert (sizes.load_seconds, sizes.load_clients, sizes.http_windows_ms, sizes.naive_peft) == (5.0, 4, (0.0, 2.0),
                                                                                                 False)
    with pytest.raises(ValueError, match="expected NAME=VALUE with NAME one of .*'load_clients'"):
        BenchSizes().with_overrides(["clients=4"])
    with pytest.raises(ValueError, match="load_clients takes a int"):
        BenchSizes().with_overrides(["load_clients=many"])
    with pytest.raises(ValueError, match="load_clients=0 must be >= 1"):
        BenchSizes().with_overrides(["load_clients=0"])


def test_bench_command_rejects_an_unknown_size():
    from typer.testing import CliRunner

    from localize import cli

    result = CliRunner().invoke(cli.app, ["bench", "--only", "startup", "--size", "load_clientz=3"])
    assert result.exit_code == 2
    assert "load_clientz" in result.output and "load_clients" in result.output


def test_bitsandbytes_bench_measures_both_quantized_bases_on_a_gpu_and_says_why_not_elsewhere(base, tmp_path):
    sizes = BenchSizes(batch=8, registered_users=16, repeats=1, warmup=1, train_texts=40, int8_test_texts=20)
    results = run_benchmarks(quick=True, only=["bnb"], out=tmp_path / "bench.json",
                             console=Console(file=io.StringIO(), width=160), sizes=sizes)

    assert "errors" not in results
    if not torch.cuda.is_available():
        assert "CUDA GPU" in results["bnb_skipped"] and "skipped" in results["notes"]["bnb"]
        assert "bnb8_speedup" not in results
        return
    for name in ("bnb8", "bnb4"):
        assert _positive(results[f"{name}_speedup"])
        assert 0 < results[f"{name}_weight_bytes"] < results["float32_gpu_weight_bytes"]
        assert 0 <= results[f"{name}_label_agreement"] <= 1
        assert isinstance(results[f"{name}_accuracy_delta"], float)
    assert results["bnb_test_texts"] == 20 and results["bnb_gpu"]


def test_head_ensemble_bench_times_one_loop_against_heads_one_after_another(base, tmp_path):
    sizes = dataclasses.replace(TINY, train_texts=80, train_repeats=1)
    results = run_benchmarks(quick=True, only=["head_ensemble"], out=None, console=Console(file=io.StringIO()),
                             sizes=sizes)

    assert "errors" not in results
    for key in ["head_ensemble_one_loop_seconds", "head_ensemble_one_after_another_seconds", "head_ensemble_speedup"]:
        assert _positive(results.get(key)), f"{key}={results.get(key)!r}"
    epochs = results["details"]["head_ensemble_best_epochs"]
    assert len(epochs["one_loop"]) == len(epochs["one_after_another"]) == 5  # five heads, each its best epoch


def test_prior_precision_bench_times_a_prior_epoch_in_both_precisions(base, monkeypatch):
    from localize import base_model

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    base_model.cpu_has_native_bf16.cache_clear()
    try:
        sizes = dataclasses.replace(TINY, prior_precision_texts=12, train_repeats=1)
        results = run_benchmarks(quick=True, only=["prior_precision"], out=None,
                                 console=Console(file=io.StringIO()), sizes=sizes)
    finally:
        base_model.cpu_has_native_bf16.cache_clear()

    assert "errors" not in results
    for key in ["prior_epoch_float32_seconds", "prior_epoch_bf16_seconds", "prior_epoch_bf16_speedup",
                "prior_encode_bf16_speedup"]:
        assert _positive(results.get(key)), f"{key}={results.get(key)!r}"
    assert results["prior_precision_native_bf16"] is True  # what mixed_precision=auto reads on this CPU
    # Both precisions trained the same prior on the same rows: their training losses agree closely.
    assert abs(results["prior_train_loss_bf16_minus_float32"]) < 0.05
    assert {len(v) for v in results["details"]["prior_precision_epoch_seconds"].values()} == {1}
