"""One user's default adapter from 500 labels, cold and warm activation cache (full run only: a naive PEFT LoRA
loop as the baseline), and training time against labels per user."""
from __future__ import annotations

import statistics
import time

import torch

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.stats import ratio, round_dict, round_value


def run(ctx: BenchContext) -> None:
    from localize.activations import ActivationCache
    from localize.demo_data import JOHN, LABELS, demo_rows
    from localize.training import Trainer
    from localize.training_args import TrainingArguments

    sizes = ctx.sizes
    rows = demo_rows(n_per_user=sizes.train_texts, seed=7, users=(JOHN,))
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    args = TrainingArguments()
    prior = ctx.task_prior()
    # Untimed: one small run pays the process's one-time costs (lazy imports, the accelerator).
    Trainer(ctx.base, TrainingArguments(max_epochs=1), texts[:40], labels[:40], LABELS,
            cache=ActivationCache(), init=prior).train()

    def timed(cache: ActivationCache) -> dict[str, float]:
        begun = time.perf_counter()
        trainer = Trainer(ctx.base, args, texts, labels, LABELS, cache=cache, init=prior)
        trainer.prepare()
        prepared = time.perf_counter()
        trainer.fit()
        trainer.result()
        done = time.perf_counter()
        return {"seconds": done - begun, "prepare_seconds": prepared - begun, "fit_seconds": done - prepared,
                "epochs": trainer.metrics["epochs"], "val_macro_f1": trainer.metrics.get("val_macro_f1"),
                "train_rows": trainer.metrics["train_rows"]}

    caches = [ActivationCache() for _ in range(sizes.train_repeats)]
    cold = [timed(cache) for cache in caches]
    # Warm: another user has already trained on the same texts, so the cache holds exactly their activations.
    warm = [timed(caches[-1]) for _ in range(sizes.train_repeats)]
    cold_s = statistics.median(r["seconds"] for r in cold)
    warm_s = statistics.median(r["seconds"] for r in warm)
    ctx.details["train_cold"] = [round_dict(r) for r in cold]
    ctx.details["train_warm"] = [round_dict(r) for r in warm]
    ctx.results.update({
        "train_500_seconds": round(cold_s, 3),
        "train_500_warm_seconds": round(warm_s, 3),
        "adapters_per_hour": round(3600 / warm_s, 1),
        "train_500_epochs": cold[0]["epochs"],
        "train_500_val_macro_f1": round_value(cold[0]["val_macro_f1"]),
        "train_500_prepare_seconds": round(statistics.median(r["prepare_seconds"] for r in cold), 3),
        "train_500_fit_seconds": round(statistics.median(r["fit_seconds"] for r in cold), 3),
    })
    ctx.notes["train"] = (
        f"{len(texts)} labelled demo tweets (user john), TrainingArguments() defaults: a linear head on the task "
        f"prior's encoding (prior: {args.method} on the top {len(args.method_options['layers'])} layers, trained "
        f"untimed beforehand), fitted by {args.head_fit}; cold = fresh ActivationCache (the texts go through the frozen "
        "layers and the prior's tuned layers), warm = the cache already holds the texts' encodings (another user "
        "of the task labelled them); adapters_per_hour = 3600 / warm seconds")
    if sizes.naive_peft:
        naive = _naive_peft(ctx, texts, labels, LABELS)
        ctx.results["naive_peft_lora_500_seconds"] = round(naive, 3)
        ctx.results["train_500_speedup_vs_naive_peft"] = ratio(naive, cold_s)
        ctx.notes["naive_peft"] = (
            f"plain PEFT LoRA r=8 on query,value of the BertModel + linear head on mean pooling, "
            f"{sizes.naive_epochs} epochs of {len(texts)} texts, batch 32, AdamW lr 2e-3; one run")

    _train_scaling(ctx)


def _train_scaling(ctx: BenchContext) -> None:
    """Training time (fresh activation cache) against labels per user: cost must grow no faster than linearly."""
    from localize.activations import ActivationCache
    from localize.demo_data import JOHN, LABELS, demo_rows
    from localize.training import Trainer
    from localize.training_args import TrainingArguments

    table = {}
    for count in ctx.sizes.train_scaling:
        rows = demo_rows(n_per_user=count, seed=17, users=(JOHN,))
        texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
        begun = time.perf_counter()
        trainer = Trainer(ctx.base, TrainingArguments(), texts, labels, LABELS, cache=ActivationCache(),
                          init=ctx.task_prior())
        trainer.prepare()
        prepared = time.perf_counter()
        trainer.fit()
        trainer.result()
        done = time.perf_counter()
        table[str(count)] = {"seconds": round(done - begun, 3), "encode_seconds": round(prepared - begun, 3),
                             "fit_seconds": round(done - prepared, 3), "epochs": trainer.metrics["epochs"],
                             "ms_per_label": round(1000 * (done - begun) / count, 2)}
    ctx.results["train_seconds_by_labels"] = table


def _naive_peft(ctx: BenchContext, texts: list[str], labels: list[str], label_set: list[str]) -> float:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel

    torch.manual_seed(0)
    begun = time.perf_counter()
    device = ctx.base.device  # where the product trains, so that the baseline runs on the same hardware
    model = AutoModel.from_pretrained(ctx.base.path, local_files_only=True)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]))
    model.to(device)
    head = torch.nn.Linear(ctx.base.dims.hidden_size, len(label_set)).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=2e-3)
    targets = torch.tensor([label_set.index(label) for label in labels], device=device)
    model.train()
    for _epoch in range(ctx.sizes.naive_epochs):
        order = torch.randperm(len(texts)).tolist()
        for start in range(0, len(texts), 32):
            batch = order[start : start + 32]
            ids, mask = ctx.base.tokenize([texts[i] for i in batch])
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
            loss = torch.nn.functional.cross_entropy(head(ctx.base.pool(hidden, mask)), targets[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return time.perf_counter() - begun


register_benchmark(Benchmark(
    "train", run, "one user's default adapter from 500 labels, cold and warm activation cache (full run only: a "
    "naive PEFT LoRA loop as the baseline)", goals=(Goal("train_500_seconds", "<=", 3.0),)))
