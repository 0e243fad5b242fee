"""torch dynamic int8 base vs float32: encode speed, and accuracy of the same trained adapter."""
from __future__ import annotations

import statistics
import time

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, register_benchmark
from localize.bench.stats import rounded


def run(ctx: BenchContext) -> None:
    """Encode speed on the same texts (interleaved), and accuracy of one adapter trained on the float32 base, served
    by each base (the serving default flips only if both pay)."""
    from localize.base_model import BaseModel
    from localize.demo_data import JOHN, LABELS, demo_rows
    from localize.engine import Engine
    from localize.training import Trainer
    from localize.training_args import TrainingArguments

    sizes = ctx.sizes
    quantized = BaseModel(ctx.base.path, quantization="int8", device="cpu", max_seq_length=ctx.base.max_seq_length)
    times: dict[str, list[float]] = {"float32": [], "int8": []}
    for round_ in range(sizes.warmup + sizes.repeats):
        for name, model in (("float32", ctx.base), ("int8", quantized)):
            begun = time.perf_counter()
            model.encode(ctx.batch_texts, batch_size=sizes.batch)
            if round_ >= sizes.warmup:
                times[name].append(time.perf_counter() - begun)
    rows = demo_rows(n_per_user=sizes.train_texts + sizes.int8_test_texts, seed=23, users=(JOHN,))
    train, test = rows[: sizes.train_texts], rows[sizes.train_texts :]
    weights = Trainer(ctx.base, TrainingArguments(), [r["text"] for r in train], [r["label"] for r in train],
                      LABELS).train()
    accuracy = {}
    for name, model in (("float32", ctx.base), ("int8", quantized)):
        predictions = Engine(model).predict([(weights, r["text"]) for r in test])
        accuracy[name] = sum(p.label == r["label"] for p, r in zip(predictions, test)) / len(test)
    speedup = statistics.median(times["float32"]) / statistics.median(times["int8"])
    delta = 100 * (accuracy["int8"] - accuracy["float32"])
    ctx.details["int8_encode_seconds"] = {name: rounded(t) for name, t in times.items()}
    ctx.results.update({
        "int8_speedup": round(speedup, 3),
        "int8_accuracy_delta": round(delta, 2),
        "int8_accuracy": round(accuracy["int8"], 4),
        "float32_accuracy": round(accuracy["float32"], 4),
        "int8_test_texts": len(test),
        "int8_default_for_serving": speedup > 1 and delta > -0.5,
    })
    ctx.notes["int8"] = (
        f"torch.ao dynamic int8 on every encoder Linear vs float32, {sizes.batch}-text batches interleaved; "
        f"accuracy: the default adapter trained on {len(train)} demo labels (john) with the float32 base, served "
        f"on {len(test)} held-out demo tweets by each base; delta in points (int8 - float32)")


register_benchmark(Benchmark(
    "int8", run, "torch dynamic int8 base vs float32: encode speed, and accuracy of the same trained adapter"))
