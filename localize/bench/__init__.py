"""``localize bench``: speed of serving and training, each figure against a baseline measured in the same run.

Everything runs on the bundled base model and generated tweets; nothing is downloaded. Times are medians of several
repetitions after warm-up runs (``time.perf_counter``). A benchmark measures; it asserts nothing.

Layout::

    registry.py   Benchmark / Goal and register_benchmark (the run order is the registration order)
    context.py    BenchContext: what one run's benchmarks share (base model, texts, temp folder, results, engines)
    sizes.py      BenchSizes: how much work each benchmark does (full and --quick)
    runner.py     run_benchmarks: runs the chosen ones, then the table, the JSON file and the report
    table.py      the terminal table and the goal rows;  report.py: speed.md, bench.json and the plot (--report)
    server.py     helpers for benchmarks that start the product in other processes (env, port, workspace, server)
    stats.py      rate, ratio, percentile, rounding
    population.py many generated default-recipe users, stored as training would store them (Ray benchmarks)
    ray_cluster.py  a local Ray cluster and the prediction application for the Ray benchmarks
    <name>.py     one module per benchmark (listed by ``localize bench --help``)

Adding a benchmark:

1. Write ``localize/bench/<name>.py`` with ``def run(ctx: BenchContext) -> None`` that puts its scalar figures
   into ``ctx.results`` (flat keys prefixed with the benchmark's name; nested dicts are for the report), raw
   timings into ``ctx.details`` and one sentence on how it measures into ``ctx.notes[<name>]``. Import heavy
   modules inside ``run``; take sizes from ``ctx.sizes`` (add fields to ``BenchSizes``, with smaller values in
   ``for_mode(quick=True)``) and compare against a baseline measured in the same run where one exists.
2. End the module with one line:
   ``register_benchmark(Benchmark("<name>", run, "<one-line summary>", goals=(Goal("<metric>", "<", 1.0),)))``.
3. Import the module below (the order of these imports is the run order), and add a test under
   ``tests/localize/`` that runs it on tiny sizes and checks that its figures are there.
"""
from __future__ import annotations

# Registration: importing a benchmark module registers it; this order is the run order and the goal table's.
from localize.bench import (  # noqa: F401
    mixed_batch,
    swap,
    peft_mixed,
    fanout,
    train,
    head_ensemble,
    prior_precision,
    adapter_load,
    cold_start,
    int8,
    bnb,
    serve,
    http_speed,
    load,
    startup,
    ray_fanout,
    simulate,
)
from localize.bench.registry import Benchmark, Goal, register_benchmark, registered_benchmarks
from localize.bench.runner import run_benchmarks
from localize.bench.sizes import BenchSizes

BENCHMARKS = tuple(registered_benchmarks())

__all__ = ["BENCHMARKS", "Benchmark", "BenchSizes", "Goal", "register_benchmark", "registered_benchmarks",
           "run_benchmarks"]
