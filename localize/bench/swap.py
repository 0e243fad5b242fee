"""One request per user, served one at a time."""
from __future__ import annotations

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, register_benchmark
from localize.bench.stats import rate, ratio, rounded


def run(ctx: BenchContext) -> None:
    engine, adapters = ctx.registered("head")
    n = ctx.sizes.swap_users
    requests = [(adapters[i % len(adapters)], ctx.texts[i % len(ctx.texts)]) for i in range(n)]

    def serve_one_by_one() -> None:
        for row in requests:
            engine.predict([row])

    times = ctx.time(serve_one_by_one, repeats=max(1, ctx.sizes.repeats // 2))
    swap_rate = rate(n, times)
    ctx.details["swap_seconds"] = rounded(times)
    ctx.results["swap_texts_per_second"] = swap_rate
    ctx.results["swap_ratio"] = ratio(swap_rate, ctx.base_throughput())
    ctx.notes["swap"] = f"{n} single-row Engine.predict calls, each a different user; ratio against the bare base"


register_benchmark(Benchmark("swap", run, "one request per user, served one at a time"))
