"""Five MLP heads averaged into one (``prior-mlp-averaged``): trained in one epoch loop against five single-head
trainers one after another, as they trained before."""
from __future__ import annotations

import dataclasses
import statistics
import time

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.stats import ratio


def run(ctx: BenchContext) -> None:
    from localize.activations import ActivationCache
    from localize.demo_data import JOHN, LABELS, demo_rows
    from localize.recipe_candidates import MLP_HEADS, candidate_named
    from localize.training import Trainer

    sizes = ctx.sizes
    rows = demo_rows(n_per_user=sizes.train_texts, seed=11, users=(JOHN,))
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    args = candidate_named("prior-mlp-averaged").args
    prior, cache = ctx.task_prior(), ActivationCache()
    Trainer(ctx.base, args, texts, labels, LABELS, cache=cache, init=prior).train()  # untimed: encodes the texts

    def one_loop() -> tuple[float, list[int]]:
        begun = time.perf_counter()
        trainer = Trainer(ctx.base, args, texts, labels, LABELS, cache=cache, init=prior)
        trainer.train()
        return time.perf_counter() - begun, trainer.metrics["ensemble_best_epochs"]

    def one_after_another() -> tuple[float, list[int]]:
        begun, best_epochs = time.perf_counter(), []
        for index in range(MLP_HEADS):
            alone = dataclasses.replace(args, seed=args.seed + index, head_ensemble=1)
            trainer = Trainer(ctx.base, alone, texts, labels, LABELS, cache=cache, init=prior)
            trainer.train()
            best_epochs.append(trainer.metrics["best_epoch"])
        return time.perf_counter() - begun, best_epochs

    batched = [one_loop() for _ in range(sizes.train_repeats)]
    separate = [one_after_another() for _ in range(sizes.train_repeats)]
    batched_s = statistics.median(seconds for seconds, _ in batched)
    separate_s = statistics.median(seconds for seconds, _ in separate)
    ctx.details["head_ensemble_one_loop_seconds"] = [round(seconds, 3) for seconds, _ in batched]
    ctx.details["head_ensemble_one_after_another_seconds"] = [round(seconds, 3) for seconds, _ in separate]
    ctx.details["head_ensemble_best_epochs"] = {"one_loop": batched[0][1], "one_after_another": separate[0][1]}
    ctx.results.update({
        "head_ensemble_one_loop_seconds": round(batched_s, 3),
        "head_ensemble_one_after_another_seconds": round(separate_s, 3),
        "head_ensemble_speedup": ratio(separate_s, batched_s),
    })
    ctx.notes["head_ensemble"] = (
        f"{len(texts)} labelled demo tweets (user john) on a task prior; prior-mlp-averaged's arguments "
        f"({MLP_HEADS} MLP heads of {args.head_hidden}, early stopping, a refit on all rows, calibration) trained "
        f"in one epoch loop, against {MLP_HEADS} single-head trainers of seeds seed..seed+{MLP_HEADS - 1} one after "
        "another (how the heads trained before); texts already encoded. The loop runs as many epochs as its "
        "slowest head; each head computes only until it stops")


register_benchmark(Benchmark(
    "head_ensemble", run, "five MLP heads averaged: one epoch loop against five trainers one after another",
    goals=(Goal("head_ensemble_speedup", ">=", 1.5),)))
