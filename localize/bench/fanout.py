"""One text for 10,000 users (``--quick``: 1,000, extrapolated linearly), by users and by head size."""
from __future__ import annotations

import contextlib
import statistics
import time
from typing import NoReturn

import torch

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.stats import rate, rounded


def run(ctx: BenchContext) -> None:
    """One text for every user: users are registered in the engine (their parameters copied into its slot banks,
    one slot each, so every user's weights are distinct memory the pass must read)."""
    from localize.training_args import TrainingArguments

    sizes = ctx.sizes
    n = sizes.fanout_users
    texts = iter(ctx.texts[sizes.batch:] * 50)  # a new text each run, as each tweet is new
    engine, keys = _fanout_engine(ctx, {}, n, encoder=True)
    totals, lookups = [], []
    scaling: dict[str, float] = {}
    for users in sorted({*sizes.fanout_scaling, n}):
        if users > n:
            continue
        times = []
        for attempt in range(sizes.fanout_repeats + 1):  # the first run is a warm-up
            text = next(texts)
            begun = time.perf_counter()
            rows = [(engine.adapter(key, _not_loaded), text) for key in keys[:users]]  # resident lookups
            looked_up = time.perf_counter()
            engine.predict(rows)
            if attempt:
                times.append(time.perf_counter() - begun)
                if users == n:
                    lookups.append(looked_up - begun)
        scaling[str(users)] = round(statistics.median(times), 4)
        if users == n:
            totals = times
    burst = sizes.fanout_burst
    burst_texts = [next(texts) for _ in range(burst)]
    burst_times = ctx.time(lambda: engine.predict([(engine.adapter(k, _not_loaded), t) for t in burst_texts
                                                   for k in keys]), repeats=sizes.fanout_repeats)
    resident = engine.resident_bytes()
    del engine, keys
    one_text = ctx.time(lambda: ctx.base.encode([next(texts)]), repeats=max(3, sizes.repeats))
    users_per_second = rate(n, totals)
    by_head: dict[str, float] = {}
    for hidden in sizes.fanout_head_sizes:
        small, small_keys = _fanout_engine(ctx, {"hidden": hidden}, n, encoder=False)
        text = next(texts)
        times = ctx.time(lambda: small.predict([(small.adapter(k, _not_loaded), text) for k in small_keys]),
                         repeats=sizes.fanout_repeats)
        by_head[f"{hidden} (frozen base)"] = round(10_000 / rate(n, times), 3)
        del small, small_keys
    ctx.details.update({
        "fanout_seconds": rounded(totals),
        "fanout_lookup_seconds": rounded(lookups),
        "base_one_text_seconds": rounded(one_text),
    })
    ctx.results.update({
        "fanout_users_measured": n,
        "fanout_users_per_second": users_per_second,
        "fanout_10000_seconds": round(10_000 / users_per_second, 3),
        "fanout_10000_extrapolated": n != 10_000,
        "fanout_seconds_by_users": scaling,
        "fanout_10000_seconds_by_head_hidden": {**by_head,
                                                "0 (default: on the task prior's encoder)": round(
                                                    10_000 / users_per_second, 3)},
        "fanout_burst_texts": burst,
        "fanout_burst_user_texts_per_second": rate(burst * n, burst_times),
        "fanout_resident_bytes": resident,
        "fanout_base_one_text_ms": round(1000 * statistics.median(one_text), 2),
    })
    ctx.notes["fanout"] = (
        f"one new text for {n} users of the default recipe (a linear head each, reading one shared task prior: "
        f"LoRA r=8 on the six linear maps of the top {len(TrainingArguments().method_options['layers'])} layers), "
        "each user's head in its own engine slot; time "
        "includes the per-user resident lookup; the prior's tuned layers run once for the text and the pooled "
        "vector is swept against contiguous bank slices (a matrix-vector product per weight); "
        "fanout_seconds_by_users: the same for the first N users; by_head_hidden: the same 10,000-user fan-out "
        "with heads on the frozen base (hidden 0: linear; 32: a small MLP); "
        f"burst: {burst} texts at once for every user (each user's weights read once)"
        + (f"; fanout_10000_seconds extrapolated linearly from {n} users" if n != 10_000 else ""))


def _fanout_engine(ctx: BenchContext, options: dict, n: int, *, encoder: bool):
    """An engine with ``n`` resident head users; with ``encoder`` they all read one shared task prior."""
    from localize.engine import Engine
    from localize.training_args import recommended_options

    adapters = ctx.random_adapters("head", options, n, distinct=ctx.sizes.fanout_distinct, seed=4)
    engine = Engine(ctx.base, capacity=max(n + 1, 1))
    if encoder:
        (prior,) = ctx.random_adapters("lora", recommended_options("lora"), 1, seed=5)
        prior = engine.adapter(("fanout", "prior"), lambda: prior)
        for weights in adapters:
            weights.encoder = prior
    keys = [("fanout", i) for i in range(n)]
    with _torch_threads(1):  # registration copies many small tensors: threads only add overhead
        for key, weights in zip(keys, adapters):
            engine.adapter(key, lambda w=weights: w)
    return engine, keys


@contextlib.contextmanager
def _torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _not_loaded() -> NoReturn:
    raise RuntimeError("fan-out adapters are all resident; nothing should load")


register_benchmark(Benchmark(
    "fanout", run, "one text for 10,000 users (--quick: 1,000, extrapolated linearly)",
    goals=(Goal("fanout_10000_seconds", "<", 1.0),)))
