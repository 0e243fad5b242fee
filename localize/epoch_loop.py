"""The epochs that train an adapter by gradient steps (every recipe but a MAP-fitted head): AdamW over each epoch's
batches, the learning-rate schedule, the training step's precision, early stopping on the validation rows, and
progress with the time left."""
from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Callable
from typing import Any

import torch

from localize.adapters.base import AdapterMethod
from localize.base_model import cpu_has_native_bf16
from localize.trainable_adapter import TrainableAdapter
from localize.training_args import TrainingArguments
from localize.training_rows import Split

ProgressCallback = Callable[[float, str], None]
Batches = Callable[[Split, random.Random], list[list[int]]]
Scorer = Callable[[Split, torch.Tensor | None], dict[str, float]]


class EpochLoop:
    """:meth:`train` runs epochs until the cap or early stopping and keeps the best epoch's parameters; :meth:`refit`
    then trains again from the same start, on more rows, for a given number of epochs."""

    def __init__(self, adapter: TrainableAdapter, args: TrainingArguments, *, batches: Batches, score: Scorer,
                 progress: ProgressCallback, history: list[dict[str, float]]) -> None:
        """``batches``: each epoch's row indexes; ``score``: a split's loss, accuracy and macro-F1; ``history``: where
        each epoch's record is appended."""
        self.adapter = adapter
        self.args = args
        self.batches = batches
        self.score = score
        self.progress = progress
        self.history = history

    def train(self, train_split: Split, val_split: Split | None, class_weights: torch.Tensor | None) -> int | None:
        """AdamW epochs with early stopping on validation; leaves the best epoch's parameters and returns it."""
        args = self.args
        trainable, optimizer = self._optimizer(train_split)
        accelerator = accelerator_for(self.adapter.base.device)
        self._order_rng = random.Random(args.seed)  # the refit continues this stream
        self._initial_state = self.adapter.snapshot()
        self._epochs_started = time.perf_counter()
        best_score, best_epoch, best_state, stale = None, None, None, 0
        epochs = self._epochs_to_run()
        for epoch in range(epochs):
            record = {"epoch": epoch + 1, "train_loss": self._epoch(train_split, optimizer, accelerator,
                                                                    class_weights, self._order_rng, epoch=epoch)}
            if val_split is not None:
                val = self.score(val_split, class_weights)
                record.update({"val_loss": val["loss"], "val_accuracy": val["accuracy"],
                               "val_macro_f1": val["macro_f1"]})
                score = stopping_score(args, val)
                if best_score is None or score > best_score:
                    best_score, best_epoch, stale = score, epoch + 1, 0
                    best_state = self.adapter.snapshot()
                else:
                    stale += 1
            self.history.append(record)
            done = (epoch + 1) / epochs
            self.progress(done, f"epoch {epoch + 1}/{epochs}: " + describe_scores(record) + self._eta(done))
            if val_split is not None and stale >= args.patience:
                break
        if best_state is not None:
            self.adapter.restore(best_state)
        for tensor in trainable:
            tensor.requires_grad_(False)
        return best_epoch

    def refit(self, split: Split, epochs: int, class_weights: torch.Tensor | None) -> None:
        """Trains again from where :meth:`train` started, on ``split`` for ``epochs`` epochs."""
        self.adapter.restore(self._initial_state)
        self.adapter.reset_annotator_heads()
        trainable, optimizer = self._optimizer(split)
        for _ in range(epochs):
            self._epoch(split, optimizer, accelerator_for(self.adapter.base.device), class_weights, self._order_rng)
        for tensor in trainable:
            tensor.requires_grad_(False)

    def _optimizer(self, split: Split) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
        """The adapter's trainable tensors, now requiring gradients, and an AdamW over them (its schedule set for
        ``split``'s rows)."""
        trainable = self.adapter.trainable()
        for tensor in trainable:
            tensor.requires_grad_(True)
        optimizer = torch.optim.AdamW(trainable, lr=learning_rate(self.args, self.adapter.method),
                                      weight_decay=self.args.weight_decay)
        self._scheduler = learning_rate_schedule(optimizer, self.args, len(split.texts))
        return trainable, optimizer

    def _epochs_to_run(self) -> int:
        return min(self.args.max_epochs, self.args.last_epoch or self.args.max_epochs)

    def _epoch(self, split: Split, optimizer: torch.optim.Optimizer, accelerator: Any,
               class_weights: torch.Tensor | None, rng: random.Random, epoch: int | None = None) -> float:
        """One pass over ``split``; returns the mean training loss. Given its ``epoch`` (from 0), it reports its
        rows as it goes (at most once a second), so a long epoch (a task prior's) shows how far it is."""
        total, seen, reported = 0.0, 0, time.perf_counter()
        for batch in self.batches(split, rng):
            with step_precision(self.args, self.adapter, split, accelerator):
                loss = self.adapter.training_loss(split, batch, class_weights)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            optimizer.step()
            if self._scheduler is not None:
                self._scheduler.step()
            total += loss.item() * len(batch)
            seen += len(batch)
            if epoch is not None and time.perf_counter() - reported >= 1.0 and seen < len(split.texts):
                reported = time.perf_counter()
                done = (epoch + seen / len(split.texts)) / self._epochs_to_run()
                self.progress(done, f"epoch {epoch + 1}/{self._epochs_to_run()}: {seen:,}/{len(split.texts):,} rows"
                              + self._eta(done))
        return total / max(1, len(split.texts))

    def _eta(self, done: float) -> str:
        return time_left(self._epochs_started, done)


def stopping_score(args: TrainingArguments, val: dict[str, float]) -> tuple[float, ...]:
    """What early stopping maximises over epochs, from a validation split's scores. Macro-F1 is what users feel;
    validation loss only breaks ties (it rises with confidence long before the decisions get worse, so stopping on
    it alone stops far too early)."""
    return (val["macro_f1"], -val["loss"]) if args.early_stopping == "macro_f1" else (-val["loss"],)


def learning_rate(args: TrainingArguments, method: AdapterMethod) -> float:
    return args.learning_rate or method.default_learning_rate


def learning_rate_schedule(optimizer: torch.optim.Optimizer, args: TrainingArguments, rows: int) -> Any:
    """None for a constant rate; for ``linear``, a warm-up over the first 6% of the steps, then a decay to zero."""
    if args.lr_schedule == "constant":
        return None
    total = args.max_epochs * -(-rows // args.batch_size)
    warmup = max(1, int(0.06 * total))

    def factor(step: int) -> float:
        return (step + 1) / warmup if step < warmup else max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def step_precision(args: TrainingArguments, adapter: TrainableAdapter, split: Split,
                   accelerator: Any) -> contextlib.AbstractContextManager:
    """The training step's precision (``mixed_precision``). Rows that are pooled vectors (a head) are too
    little work to gain from bf16 and stay float32."""
    mode = args.mixed_precision
    if mode == "no":
        return contextlib.nullcontext()
    if adapter.base.device.type != "cpu":
        return accelerator.autocast()  # bf16 where the GPU has it (accelerate's choice), else float32
    runs_layers = adapter.method.embeds_inputs or (bool(split.inputs) and split.inputs[0].dim() > 1)
    if runs_layers and (mode == "bf16" or cpu_has_native_bf16()):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=None)
def accelerator_for(device: torch.device):
    """accelerate handles backward and mixed precision: bf16 autocast on a GPU that has it, full precision on a CPU."""
    from accelerate import Accelerator

    on_gpu = device.type == "cuda"
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    return Accelerator(cpu=not on_gpu, mixed_precision="bf16" if bf16 else "no")


def time_left(started: float, done: float) -> str:
    """``done`` of the epoch cap so far, since ``started``: the time left at most (early stopping may end sooner)."""
    if not 0 < done < 1:
        return ""
    elapsed = time.perf_counter() - started
    return f"; at most {format_duration(elapsed * (1 - done) / done)} left"


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``: how long, for a person."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def describe_scores(record: dict[str, Any]) -> str:
    """The record's losses and validation scores, for a progress line."""
    keys = ("train_loss", "val_loss", "val_accuracy", "val_macro_f1")
    return ", ".join(f"{k}={record[k]:.3f}" for k in keys if isinstance(record.get(k), float))


__all__ = ["EpochLoop", "ProgressCallback", "accelerator_for", "describe_scores", "format_duration", "learning_rate",
           "learning_rate_schedule", "step_precision", "stopping_score", "time_left"]
