"""Bare base model on 128 texts vs. 128 rows of 128 different users (head; LoRA on the top layer), and the
throughput curve against distinct users per batch."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.stats import rate, ratio, rounded


def run(ctx: BenchContext) -> None:
    """Bare base, head mixed batch and top-layer LoRA mixed batch, interleaved round by round, so drift in the
    machine's load hits all three alike."""
    sizes = ctx.sizes
    engines = {kind: ctx.registered(kind)[0] for kind in ("head", "lora_top")}
    size = sizes.batch
    rows = {kind: [ctx.mixed_rows(kind, r) for r in range(sizes.repeats + sizes.warmup)] for kind in engines}
    runs: dict[str, Callable[[int], Any]] = {
        "base": lambda r: ctx.base.encode(ctx.batch_texts, batch_size=size),
        "head": lambda r: engines["head"].predict(rows["head"][r]),
        "lora_top": lambda r: engines["lora_top"].predict(rows["lora_top"][r]),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(sizes.warmup + sizes.repeats):
        for name, fn in runs.items():
            begun = time.perf_counter()
            fn(round_)
            if round_ >= sizes.warmup:
                times[name].append(time.perf_counter() - begun)
    ctx.store_base(times["base"])
    base = ctx.results["base_texts_per_second"]
    head, lora = rate(size, times["head"]), rate(size, times["lora_top"])
    ctx.details["mixed_batch_seconds"] = rounded(times["head"])
    ctx.details["mixed_batch_lora_top_seconds"] = rounded(times["lora_top"])
    ctx.results.update({
        "mixed_batch_texts_per_second": head,
        "mixed_batch_ratio": ratio(head, base),
        "mixed_batch_lora_top_texts_per_second": lora,
        "mixed_batch_ratio_lora_top": ratio(lora, base),
        "mixed_batch_registered_users": sizes.registered_users,
        "mixed_batch_distinct_users_per_batch": size,
    })
    ctx.notes["mixed_batch"] = (
        f"{size} texts per batch, each row a different user out of {sizes.registered_users} resident "
        "adapters (default head; LoRA r=8 query,value on the top layer; each user its own AdapterWeights, "
        f"{2 * size} distinct parameter sets, so no two rows of a batch share tensors); base = BaseModel.encode "
        "on the same texts; rounds interleaved")

    _distinct_user_curve(ctx, engines)


def _distinct_user_curve(ctx: BenchContext, engines: dict[str, Any]) -> None:
    """Throughput of 128-text batches against the number of distinct users per batch (rows cycle over them)."""
    sizes = ctx.sizes
    size = sizes.batch
    curve: dict[str, dict[str, float]] = {"base": {}, "head": {}, "lora_top": {}}
    for users in sizes.distinct_user_counts:
        users = min(users, size)
        rows = {kind: [(ctx.registered(kind)[1][i % users], text) for i, text in enumerate(ctx.batch_texts)]
                for kind in engines}
        times: dict[str, list[float]] = {"base": [], "head": [], "lora_top": []}
        for round_ in range(sizes.warmup + sizes.repeats):
            for name in times:
                begun = time.perf_counter()
                if name == "base":
                    ctx.base.encode(ctx.batch_texts, batch_size=size)
                else:
                    engines[name].predict(rows[name])
                if round_ >= sizes.warmup:
                    times[name].append(time.perf_counter() - begun)
        for name in times:
            curve[name][str(users)] = rate(size, times[name])
    ctx.results["throughput_by_distinct_users"] = curve
    ctx.results["throughput_ratio_by_distinct_users"] = {
        kind: {users: ratio(value, curve["base"][users]) for users, value in curve[kind].items()}
        for kind in ("head", "lora_top")}


register_benchmark(Benchmark(
    "mixed_batch", run, "bare base model on 128 texts vs. 128 rows of 128 different users (head; LoRA on the top "
    "layer)", goals=(Goal("mixed_batch_ratio", ">=", 0.9),)))
