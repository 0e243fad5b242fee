"""What every benchmark of one run shares: the base model, generated texts, a temporary folder, the results being
filled in, and engines or adapters that several benchmarks reuse (built on first use)."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from localize.bench.sizes import BenchSizes
from localize.bench.stats import rate, rounded


class BenchContext:
    def __init__(self, sizes: BenchSizes, results: dict[str, Any]) -> None:
        from localize.base_model import get_base_model
        from localize.demo_data import generate_tweets

        self.sizes = sizes
        self.results = results
        self.details: dict[str, Any] = results.setdefault("details", {})
        self.notes: dict[str, str] = results.setdefault("notes", {})
        loaded = time.perf_counter()
        self.base = get_base_model()
        self.base_load_seconds = round(time.perf_counter() - loaded, 3)  # 0 when this process already had it
        # Enough distinct texts for every benchmark: batches, fan-out texts, training rows.
        self.texts = [tweet.text for tweet in generate_tweets(max(sizes.batch * 4, 600), seed=1)]
        self.batch_texts = self.texts[: sizes.batch]
        self._tmp = tempfile.TemporaryDirectory(prefix="localize-bench-")
        self.tmp = Path(self._tmp.name)
        self._mixed: dict[str, list] = {}
        self._engines: dict[str, Any] = {}
        self._prior = None  # the default recipe's task prior, trained on first use

    def close(self) -> None:
        self._tmp.cleanup()

    def time(self, fn: Callable[[], Any], repeats: int | None = None, warmup: int | None = None) -> list[float]:
        """Seconds of each timed call of ``fn``, after untimed warm-up calls."""
        for _ in range(self.sizes.warmup if warmup is None else warmup):
            fn()
        times = []
        for _ in range(self.sizes.repeats if repeats is None else repeats):
            begun = time.perf_counter()
            fn()
            times.append(time.perf_counter() - begun)
        return times

    def random_adapters(self, method: str, options: dict, n: int, *, distinct: int | None = None, seed: int = 0):
        """``n`` AdapterWeights (each its own object); with ``distinct`` they share that many parameter sets."""
        from localize.adapters import make_method
        from localize.adapters.base import init_head
        from localize.demo_data import LABELS
        from localize.engine import AdapterWeights

        generator = torch.Generator().manual_seed(seed)
        dims = self.base.dims
        method_obj = make_method(method, options, dims)
        sets = []
        for _ in range(min(n, distinct or n)):
            params = method_obj.init_params(self.base, generator)
            # Zero-initialised tensors (LoRA B, the MLP's down map) get values, as a trained adapter has.
            params = {k: v if v.any() else torch.randn(v.shape, generator=generator) * 0.01 for k, v in params.items()}
            sets.append((params, init_head(len(LABELS), dims.hidden_size, generator)))
        return [
            AdapterWeights(method=make_method(method, options, dims), params=dict(sets[i % len(sets)][0]),
                           head=dict(sets[i % len(sets)][1]), labels=list(LABELS), base_model_id=dims.model_id,
                           version=1)
            for i in range(n)
        ]

    def registered(self, kind: str):
        """An engine with ``registered_users`` resident adapters of ``kind`` (head or lora_top), and the adapters."""
        if kind not in self._engines:
            from localize.engine import Engine

            method, options = {"head": ("head", {}), "lora_top": ("lora", {"layers": [-1]})}[kind]
            n = self.sizes.registered_users
            engine = Engine(self.base, capacity=max(n, 1))
            # Consecutive users never share tensors within a batch; only users a batch apart may.
            adapters = self.random_adapters(method, options, n, distinct=2 * self.sizes.batch,
                                            seed=1 if kind == "head" else 2)
            self._mixed[kind] = [engine.adapter((kind, i), lambda w=w: w) for i, w in enumerate(adapters)]
            self._engines[kind] = engine
        return self._engines[kind], self._mixed[kind]

    def mixed_rows(self, kind: str, round_: int) -> list:
        """A batch whose every row belongs to a different user; each round takes the next users in turn."""
        _, adapters = self.registered(kind)
        n, size = len(adapters), self.sizes.batch
        users = [adapters[(round_ * size + i) % n] for i in range(size)]
        return list(zip(users, self.batch_texts))

    def base_throughput(self) -> float:
        """The bare base model's texts/s on one batch: the baseline of every engine ratio (measured once)."""
        if "base_texts_per_second" not in self.results:
            times = self.time(lambda: self.base.encode(self.batch_texts, batch_size=self.sizes.batch))
            self.store_base(times)
        return self.results["base_texts_per_second"]

    def store_base(self, times: list[float]) -> None:
        self.details["base_batch_seconds"] = rounded(times)
        self.results["base_texts_per_second"] = rate(self.sizes.batch, times)

    def task_prior(self):  # noqa: ANN201
        """The default recipe's task prior, trained once (one epoch) on John's and Jane's pooled demo labels."""
        if self._prior is None:
            from localize.activations import ActivationCache
            from localize.demo_data import JANE, JOHN, LABELS, demo_rows
            from localize.training import Trainer
            from localize.training_args import TrainingArguments

            rows = demo_rows(n_per_user=300, seed=31, users=(JOHN, JANE))
            args = dataclasses.replace(TrainingArguments().for_prior(), max_epochs=1)
            self._prior = Trainer(self.base, args, [r["text"] for r in rows], [r["label"] for r in rows], LABELS,
                                  cache=ActivationCache()).train()
        return self._prior
