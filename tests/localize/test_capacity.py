"""The capacity model's arithmetic, checked against hand-computed plans, and its inputs' validation."""
from __future__ import annotations

import json

import pytest

from localize.capacity import GIB, SCENARIOS, Figures, Workload, plan, render

# Round figures so every number below can be checked by hand.
FIGURES = Figures(predictions_per_second_per_replica=100.0, replica_cpus=2.0, resident_adapter_bytes=1024.0,
                  replica_base_bytes=1.0 * GIB, adapter_load_ms=10.0, train_seconds_per_adapter=6.0,
                  stored_adapter_bytes=4096.0)


def test_compute_bound_plan():
    # 1,000 rows/s over 100 rows/s at 80% -> 12.5 -> 13 replicas; 2 GiB - 1 GiB base = 1,048,576 adapters each,
    # so 100,000 active users fit in one replica's memory: compute binds.
    workload = Workload(users=1_000_000, active_fraction=0.1, requests_per_second=1_000.0,
                        retrains_per_user_per_day=0.1, replica_memory_gib=2.0, target_utilization=0.8)
    result = plan(workload, FIGURES)
    assert result.active_users == 100_000
    assert result.adapters_per_replica == 1_048_576
    assert (result.replicas_for_compute, result.replicas_for_memory, result.replicas) == (13, 1, 13)
    assert result.bottleneck == "compute"
    assert result.miss_ratio == 0.0 and result.adapter_loads_per_second == 0.0
    assert result.replica_utilization == pytest.approx(10 / 13)
    # 100,000 retrains x 6 s = 600,000 worker-seconds over 86,400 s at 80% -> 8.68 -> 9 workers.
    assert result.retrains_per_day == 100_000 and result.training_workers == 9
    assert result.worker_utilization == pytest.approx(600_000 / (86_400 * 9))
    assert result.store_bytes == 1_000_000 * 4096
    assert result.cores == 13 * 2 + 9
    assert result.limits["compute_rows_per_second"] == pytest.approx(13 * 100 * 0.8)


def test_memory_bound_plan():
    # 1.5 GiB replicas leave 0.5 GiB = 524,288 adapters; 1,000,000 active users need 2 replicas; 50 rows/s
    # need 1 for compute: memory binds.
    workload = Workload(users=1_000_000, active_fraction=1.0, requests_per_second=50.0, replica_memory_gib=1.5,
                        retrains_per_user_per_day=0.0, target_utilization=0.5)
    result = plan(workload, FIGURES)
    assert (result.adapters_per_replica, result.replicas_for_compute, result.replicas_for_memory) == (524_288, 1, 2)
    assert result.replicas == 2 and result.bottleneck == "memory"
    assert result.training_workers == 0 and result.worker_utilization == 0.0


def test_adapter_loads_add_replicas_when_only_part_of_the_active_set_is_resident():
    # Keep a quarter resident: memory asks for ceil(250,000 / 524,288) = 1 replica and compute for 1 (50 rows/s at
    # 50%). With 1 replica the miss ratio is 1 - 524,288 / 1,000,000 = 0.4757; loads cost 50 x 0.4757 x 10 ms =
    # 0.238 replica-s/s on top of 0.5 -> 0.738 > 1 x 0.5. With 2 replicas nothing misses: 0.5 <= 1.0.
    workload = Workload(users=1_000_000, active_fraction=1.0, requests_per_second=50.0, replica_memory_gib=1.5,
                        retrains_per_user_per_day=0.0, target_utilization=0.5, resident_share=0.25)
    result = plan(workload, FIGURES)
    assert (result.replicas_for_compute, result.replicas_for_memory) == (1, 1)
    assert result.replicas == 2 and result.bottleneck == "adapter loads"
    assert result.miss_ratio == 0.0


def test_a_nightly_window_needs_more_workers():
    around_the_clock = plan(Workload(retrains_per_user_per_day=0.1, target_utilization=1.0), FIGURES)
    nightly = plan(Workload(retrains_per_user_per_day=0.1, target_utilization=1.0, retrain_window_hours=6), FIGURES)
    assert around_the_clock.training_workers == 7  # 600,000 s / 86,400 s = 6.94
    assert nightly.training_workers == 28  # 600,000 s / 21,600 s = 27.8


def test_figures_come_from_bench_json_with_later_files_winning(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"mixed_batch_texts_per_second": 900.0, "resident_adapter_bytes": 4608,
                                 "train_500_seconds": 2.5, "adapter_load_ms_p50": 1.5, "other": "ignored"}))
    ray_bench = tmp_path / "ray.json"
    ray_bench.write_text(json.dumps({"serve_rows_per_second_per_replica": 700.0, "serve_replica_base_bytes": 5e8}))
    figures = Figures.from_files([bench, ray_bench])
    assert figures.predictions_per_second_per_replica == 700.0  # the end-to-end Serve figure wins
    assert figures.resident_adapter_bytes == 4608 and figures.train_seconds_per_adapter == 2.5
    assert figures.adapter_load_ms == 1.5 and figures.replica_base_bytes == 5e8
    assert figures.stored_adapter_bytes == Figures().stored_adapter_bytes  # not measured: the default stays


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Workload(active_fraction=0.0), r"active_fraction=0.0 must be in \(0, 1\]"),
    (lambda: Workload(target_utilization=1.5), r"target_utilization=1.5 must be in \(0, 1\]"),
    (lambda: Workload(retrain_window_hours=30), r"retrain_window_hours=30 must be in \(0, 24\]"),
    (lambda: Figures(adapter_load_ms=0), r"figure adapter_load_ms=0 must be a positive number"),
    (lambda: plan(Workload(replica_memory_gib=0.5), FIGURES), r"replica_memory_gib=0.5 leaves no room"),
])
def test_bad_inputs_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_figures_files_are_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Figures.from_files([tmp_path / "missing.json"])
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json' is not JSON"):
        Figures.from_files([broken])


def test_the_scenario_table_names_each_plan_and_its_bottleneck():
    plans = {name: plan(workload, FIGURES) for name, workload in SCENARIOS.items()}
    table = render(plans)
    assert all(name in table.splitlines()[0] for name in SCENARIOS)
    bottleneck_row = next(line for line in table.splitlines() if "first bottleneck" in line)
    assert all(p.bottleneck in bottleneck_row for p in plans.values())


def test_the_cli_plans_from_a_bench_file(tmp_path):
    from typer.testing import CliRunner

    from localize import cli

    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"serve_rows_per_second_per_replica": 100.0, "serve_resident_adapter_bytes": 1024,
                                 "serve_replica_base_bytes": GIB, "ray_train_seconds_per_adapter": 6.0}))
    result = CliRunner().invoke(cli.app, ["capacity", "--figures", str(bench), "--rate", "1000", "--utilization",
                                          "0.8", "--replica-memory", "2", "--json"])
    assert result.exit_code == 0, result.output
    planned = json.loads(result.output)["this workload"]
    assert (planned["replicas"], planned["training_workers"], planned["bottleneck"]) == (13, 9, "compute")

    table = CliRunner().invoke(cli.app, ["capacity", "--scenarios"])
    assert table.exit_code == 0 and "first bottleneck" in table.output and "busy" in table.output
    bad = CliRunner().invoke(cli.app, ["capacity", "--active", "2"])
    assert bad.exit_code == 2 and "active_fraction=2.0 must be in (0, 1]" in bad.output
