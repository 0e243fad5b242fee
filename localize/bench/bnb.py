"""bitsandbytes 8-bit and 4-bit bases vs float32 on a CUDA GPU: encode speed, weight memory, and the accuracy of one
adapter trained on the float32 base and served by each. Without a CUDA GPU it records why it did not run."""
from __future__ import annotations

import statistics
import time

import torch

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, register_benchmark
from localize.bench.stats import rounded

QUANTIZED = ("bnb8", "bnb4")


def _weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the encoder's parameters and buffers as stored (a 4-bit weight packs two values per byte)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def run(ctx: BenchContext) -> None:
    if not torch.cuda.is_available():
        ctx.results["bnb_skipped"] = "no CUDA GPU in this process: bitsandbytes kernels need one"
        ctx.notes["bnb"] = "skipped: bitsandbytes 8-bit and 4-bit bases run on a CUDA GPU only"
        return
    from localize.base_model import BaseModel
    from localize.demo_data import JOHN, LABELS, demo_rows
    from localize.engine import Engine
    from localize.training import Trainer
    from localize.training_args import TrainingArguments

    sizes = ctx.sizes
    float32 = ctx.base if ctx.base.device.type == "cuda" else BaseModel(
        ctx.base.path, device="cuda", max_seq_length=ctx.base.max_seq_length)
    models = {"float32": float32}
    for quantization in QUANTIZED:
        models[quantization] = BaseModel(ctx.base.path, quantization=quantization, device="cuda",
                                         max_seq_length=ctx.base.max_seq_length)
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(sizes.warmup + sizes.repeats):
        for name, model in models.items():  # interleaved: a slow moment of the GPU falls on every base alike
            torch.cuda.synchronize()
            begun = time.perf_counter()
            model.encode(ctx.batch_texts, batch_size=sizes.batch)
            torch.cuda.synchronize()
            if round_ >= sizes.warmup:
                times[name].append(time.perf_counter() - begun)
    rows = demo_rows(n_per_user=sizes.train_texts + sizes.int8_test_texts, seed=23, users=(JOHN,))
    train, test = rows[: sizes.train_texts], rows[sizes.train_texts:]
    weights = Trainer(float32, TrainingArguments(), [r["text"] for r in train], [r["label"] for r in train],
                      LABELS).train()
    labels: dict[str, list[str]] = {}
    for name, model in models.items():
        labels[name] = [p.label for p in Engine(model).predict([(weights, r["text"]) for r in test])]
    truth = [r["label"] for r in test]
    accuracy = {name: sum(a == b for a, b in zip(predicted, truth)) / len(test) for name, predicted in labels.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    ctx.details["bnb_encode_seconds"] = {name: rounded(t) for name, t in times.items()}
    ctx.results.update({
        "bnb_gpu": torch.cuda.get_device_name(),
        "bnb_test_texts": len(test),
        "float32_gpu_texts_per_second": round(len(ctx.batch_texts) / median["float32"], 1),
        "float32_gpu_weight_bytes": _weight_bytes(float32.model),
        "float32_gpu_accuracy": round(accuracy["float32"], 4),
    })
    for name in QUANTIZED:
        ctx.results.update({
            f"{name}_speedup": round(median["float32"] / median[name], 3),
            f"{name}_weight_bytes": _weight_bytes(models[name].model),
            f"{name}_accuracy_delta": round(100 * (accuracy[name] - accuracy["float32"]), 2),
            f"{name}_label_agreement": round(
                sum(a == b for a, b in zip(labels[name], labels["float32"])) / len(test), 4),
        })
    ctx.notes["bnb"] = (
        f"bitsandbytes LLM.int8 (bnb8) and 4-bit (bitsandbytes' default FP4, float16 compute: bnb4) on every "
        f"encoder Linear vs float32, on {torch.cuda.get_device_name()}; {sizes.batch}-text batches interleaved; "
        f"accuracy: the default adapter trained on {len(train)} demo labels (john) with the float32 base, served "
        f"on {len(test)} held-out demo tweets by each base; delta in points (quantized - float32); agreement: the "
        f"share of those texts given float32's label")


register_benchmark(Benchmark(
    "bnb", run, "bitsandbytes 8-bit and 4-bit bases vs float32 on a CUDA GPU: speed, memory, accuracy"))
