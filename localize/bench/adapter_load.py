"""A stored adapter loaded until ready to serve; bytes per resident adapter."""
from __future__ import annotations

import time

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.stats import percentile

RESIDENT_BUDGET_BYTES = 1 << 30


def run(ctx: BenchContext) -> None:
    from localize.engine import Engine
    from localize.store import LocalAdapterStore

    n = ctx.sizes.load_adapters
    store = LocalAdapterStore(ctx.tmp / "load-store")
    adapters = ctx.random_adapters("head", {}, n + 1, seed=5)
    stored = [store.save(f"task-1/user-{i}", 1, weights) for i, weights in enumerate(adapters)]
    engine = Engine(ctx.base, capacity=max(2 * n + 2, 1))

    def load(i: int, key: str, hashes: bool) -> float:
        begun = time.perf_counter()
        engine.adapter((key, i), lambda: store.load(stored[i].key, 1,
                                                   expected_hashes=stored[i].files if hashes else None))
        return time.perf_counter() - begun

    load(n, "warm-up", True)  # untimed: first-use imports
    checked = [load(i, "checked", True) for i in range(n)]
    unchecked = [load(i, "unchecked", False) for i in range(n)]
    nbytes = adapters[0].nbytes
    ctx.details["adapter_load_ms"] = [round(1000 * t, 3) for t in checked]
    ctx.results.update({
        "adapter_load_ms_p50": round(1000 * percentile(checked, 50), 3),
        "adapter_load_ms_p95": round(1000 * percentile(checked, 95), 3),
        "adapter_load_unchecked_ms_p50": round(1000 * percentile(unchecked, 50), 3),
        "adapters_loaded": n,
        "resident_adapter_bytes": nbytes,
        "stored_adapter_bytes": stored[0].nbytes,
        "resident_adapters_max": RESIDENT_BUDGET_BYTES // nbytes,
        "resident_budget_bytes": RESIDENT_BUDGET_BYTES,
    })
    ctx.notes["adapter_load"] = (
        f"{n} stored default (head) adapters, each LocalAdapterStore.load with the sha256 check the serving "
        "path uses + Engine.adapter under a fresh key (unchecked: without the hash check); files were just "
        "written, so they are in the OS page cache; resident_adapters_max = 1 GiB / AdapterWeights.nbytes "
        "(tensor bytes only)")


register_benchmark(Benchmark(
    "adapter_load", run, "a stored adapter loaded until ready to serve; bytes per resident adapter",
    goals=(Goal("adapter_load_ms_p50", "<=", 5.0),)))
