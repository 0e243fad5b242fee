"""A task prior's epoch and the recipe choice's encodings in bfloat16 against float32, on this CPU, in one run: the
figures behind ``mixed_precision=auto``, which computes in bfloat16 only where the CPU does so in hardware."""
from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time

import torch

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.stats import ratio


def run(ctx: BenchContext) -> None:
    from localize.activations import ActivationCache
    from localize.base_model import cpu_has_native_bf16
    from localize.demo_data import JANE, JOHN, LABELS, demo_rows
    from localize.training import Trainer
    from localize.training_args import TrainingArguments

    sizes = ctx.sizes
    rows = demo_rows(n_per_user=sizes.prior_precision_texts, seed=13, users=(JOHN, JANE))
    texts, labels, users = [r["text"] for r in rows], [r["label"] for r in rows], [r["user"] for r in rows]
    prior_args = dataclasses.replace(TrainingArguments().for_prior(), max_epochs=1)
    cache = ActivationCache()  # the frozen layers' outputs, computed once (untimed) and shared by every run

    def one_epoch(precision: str) -> tuple[float, float]:
        trainer = Trainer(ctx.base, dataclasses.replace(prior_args, mixed_precision=precision), texts, labels,
                          LABELS, cache=cache, annotators=users)
        trainer.prepare()
        begun = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - begun, trainer.history[-1]["train_loss"]

    def encode(precision: str) -> float:
        prior = ctx.task_prior()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        begun = time.perf_counter()
        with autocast:
            ActivationCache().encoded(ctx.base, prior, texts, batch_size=128)
        return time.perf_counter() - begun

    one_epoch("no")  # untimed: fills the frozen layers' cache and pays one-time costs
    epochs: dict[str, list[tuple[float, float]]] = {"no": [], "bf16": []}
    encodings: dict[str, list[float]] = {"no": [], "bf16": []}
    for _ in range(sizes.train_repeats):  # alternated, so that a noisy neighbour slows both alike
        for precision in ("no", "bf16"):
            epochs[precision].append(one_epoch(precision))
            encodings[precision].append(encode(precision))
    float32_s = statistics.median(seconds for seconds, _ in epochs["no"])
    bf16_s = statistics.median(seconds for seconds, _ in epochs["bf16"])
    ctx.details["prior_precision_epoch_seconds"] = {k: [round(s, 3) for s, _ in v] for k, v in epochs.items()}
    ctx.details["prior_precision_encode_seconds"] = {k: [round(s, 3) for s in v] for k, v in encodings.items()}
    ctx.results.update({
        "prior_precision_native_bf16": cpu_has_native_bf16(),
        "prior_epoch_float32_seconds": round(float32_s, 3),
        "prior_epoch_bf16_seconds": round(bf16_s, 3),
        "prior_epoch_bf16_speedup": ratio(float32_s, bf16_s),
        "prior_train_loss_bf16_minus_float32": round(epochs["bf16"][0][1] - epochs["no"][0][1], 4),
        "prior_encode_bf16_speedup": ratio(statistics.median(encodings["no"]), statistics.median(encodings["bf16"])),
    })
    ctx.notes["prior_precision"] = (
        f"one epoch of the default task prior (LoRA on the top four layers, each annotator's head beside it) on "
        f"{len(texts)} demo labels of John and Jane, with mixed_precision=no (float32) and bf16, alternated "
        f"{sizes.train_repeats} times; the frozen layers' outputs cached beforehand; and the prior's encodings of "
        "the same texts in float32 and under bfloat16 autocast (what the recipe choice scores its candidates on). "
        "mixed_precision=auto uses bfloat16 on a CPU only where native_bf16 is true (Intel AMX or AVX512-BF16); "
        "elsewhere bfloat16 is emulated and the speed-up is not expected")


register_benchmark(Benchmark(
    "prior_precision", run, "a task prior's epoch and the choice's encodings: bfloat16 against float32 on this CPU",
    goals=(Goal("prior_epoch_bf16_speedup", ">=", 1.2),)))
