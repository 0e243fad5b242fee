"""``localize bench``: speed of serving and training, each figure against a baseline measured in the same run.

Benchmarks (``--only`` names):

    mixed_batch   bare base model on 128 texts vs. 128 rows of 128 different users (head; LoRA on the top layer)
    swap          one request per user, served one at a time
    peft          PEFT's own mixed batch (``adapter_names=[...]``) on a LoRA model with several adapters loaded
    fanout        one text for 10,000 users (``--quick``: 1,000, extrapolated linearly)
    train         one user's default adapter from 500 labels, cold and warm activation cache
                  (full run only: a naive PEFT LoRA loop as the baseline)
    adapter_load  a stored adapter loaded until ready to serve; bytes per resident adapter
    cold_start    a fresh process: import, base load, first prediction
    int8          torch dynamic int8 base vs float32: encode speed, and accuracy of the same trained adapter
    serve         a real server (uvicorn subprocess): 32 concurrent HTTP clients, per micro-batch window

Everything runs on the bundled base model and generated tweets; nothing is downloaded. Times are medians of
several repetitions after warm-up runs (``time.perf_counter``). A benchmark measures; it asserts nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from rich.console import Console
from rich.table import Table

logger = logging.getLogger(__name__)

BENCHMARKS = ("mixed_batch", "swap", "peft", "fanout", "train", "adapter_load", "cold_start", "int8", "serve")

# (metric, comparison, goal) from issue 5.
GOALS: list[tuple[str, str, float]] = [
    ("mixed_batch_ratio", ">=", 0.9),
    ("fanout_10000_seconds", "<", 1.0),
    ("train_500_seconds", "<=", 3.0),
    ("adapter_load_ms_p50", "<=", 5.0),
    ("cold_start_seconds", "<", 3.0),
]
RESIDENT_BUDGET_BYTES = 1 << 30


@dataclass
class BenchSizes:
    """How much work each benchmark does; ``for_mode`` gives the full and ``--quick`` sizes."""

    batch: int = 128  # texts per batch, one user per row in the mixed batch
    registered_users: int = 1000  # adapters resident in the engine for the mixed batch
    repeats: int = 5  # timed repetitions per measurement (the median is reported)
    warmup: int = 1  # untimed runs before each measurement
    swap_users: int = 128  # single-row requests in the swap benchmark
    peft_adapters: int = 128  # distinct LoRA adapters loaded into the PEFT model
    fanout_users: int = 10_000
    fanout_distinct: int = 50  # distinct parameter sets shared by the fan-out users (each user its own object)
    fanout_repeats: int = 3
    train_texts: int = 500
    train_repeats: int = 3
    naive_peft: bool = True  # the naive PEFT LoRA training baseline (~20 s)
    naive_epochs: int = 3
    load_adapters: int = 50
    cold_start_repeats: int = 3
    distinct_user_counts: tuple[int, ...] = (1, 8, 32, 128)  # users per batch of the throughput curve
    fanout_scaling: tuple[int, ...] = (100, 1000, 10_000)  # users of the fan-out scaling table
    fanout_head_sizes: tuple[int, ...] = (0, 32)  # smaller heads measured beside the default
    fanout_burst: int = 8  # texts fanned out at once in the burst figure
    train_scaling: tuple[int, ...] = (100, 250, 500, 1000)  # labels per user of the training scaling table
    int8_test_texts: int = 400
    http_clients: int = 32
    http_requests_per_client: int = 20
    http_windows_ms: tuple[float, ...] = (0.0, 2.0, 10.0)

    def __post_init__(self) -> None:
        if self.batch < 1 or self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"batch={self.batch} and repeats={self.repeats} must be >= 1, warmup={self.warmup} >= 0")
        if self.registered_users < self.batch:
            raise ValueError(f"registered_users={self.registered_users} must be >= batch={self.batch}: "
                             "every row of a mixed batch belongs to a different user")

    @classmethod
    def for_mode(cls, quick: bool) -> BenchSizes:
        if not quick:
            return cls()
        return cls(repeats=3, peft_adapters=16, fanout_users=1000, fanout_repeats=3, train_repeats=1,
                   naive_peft=False, cold_start_repeats=1, fanout_scaling=(100, 1000), train_scaling=(100, 500),
                   int8_test_texts=200, http_requests_per_client=5, http_windows_ms=(0.0, 2.0))


def run_benchmarks(
    *,
    quick: bool,
    only: list[str] | None,
    out: Path | None,
    console: Console,
    sizes: BenchSizes | None = None,
    threads: int | None = None,
    report: Path | None = None,
) -> dict[str, Any]:
    """Runs the chosen benchmarks (all by default), prints a table and the JSON, writes the JSON to ``out`` and,
    with ``report``, the markdown report and its plot into that folder."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads} must be >= 1")
        # Every process of the run (children too) uses this many intra-op threads: on a CPU shared with other
        # busy processes, fewer threads than cores avoids threads waiting on each other at every operation.
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    chosen = list(BENCHMARKS) if not only else list(dict.fromkeys(only))
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"benchmark(s) {unknown} are not among {list(BENCHMARKS)}")
    sizes = sizes or BenchSizes.for_mode(quick)
    results: dict[str, Any] = {"quick": quick, "benchmarks": chosen, "machine": machine_info(), "sizes": asdict(sizes)}
    started = time.perf_counter()
    run_cpu = _CpuShare()
    with console.status("loading the base model"):
        bench = _Bench(sizes, results)
    results["base_load_seconds"] = bench.base_load_seconds
    for name in chosen:
        begun = time.perf_counter()
        bench_cpu = _CpuShare()
        with console.status(f"benchmark {name}"):
            try:
                getattr(bench, name)()
            except Exception as error:  # one broken benchmark must not lose the others' figures
                logger.debug("benchmark %s failed", name, exc_info=True)
                results.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"
                console.print(f"[red]benchmark {name} failed:[/red] {error}")
                traceback.print_exc(file=sys.stderr)
        results["details"].setdefault("other_processes_cores", {})[name] = bench_cpu.others()
        console.print(f"[dim]{name}: {time.perf_counter() - begun:.1f} s[/dim]")
    bench.close()
    results["machine"]["load_average_after"] = _load_average()
    others = run_cpu.others()
    results["machine"]["other_processes_cores"] = others
    if others is not None and others > 0.25:
        # Other processes on these cores inflate every figure, small operations most (thread oversubscription).
        warning = f"other processes kept {others:.2f} of {os.cpu_count()} CPUs busy during the run; timings are inflated"
        results["warnings"] = [warning]
    results["total_seconds"] = round(time.perf_counter() - started, 2)
    results["goals"] = goal_report(results)
    print_report(results, console)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str))
        console.print(f"wrote {out}")
    if report is not None:
        from localize.bench_report import write_report

        written = write_report(results, Path(report))
        console.print(f"wrote {', '.join(str(path) for path in written)}")
    return results


# -- the benchmarks -----------------------------------------------------------------------------------------------
class _Bench:
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

    def _time(self, fn: Callable[[], Any], repeats: int | None = None, warmup: int | None = None) -> list[float]:
        for _ in range(self.sizes.warmup if warmup is None else warmup):
            fn()
        times = []
        for _ in range(self.sizes.repeats if repeats is None else repeats):
            begun = time.perf_counter()
            fn()
            times.append(time.perf_counter() - begun)
        return times

    # -- helpers ------------------------------------------------------------------------------------------------
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
        if "base_texts_per_second" not in self.results:
            times = self._time(lambda: self.base.encode(self.batch_texts, batch_size=self.sizes.batch))
            self._store_base(times)
        return self.results["base_texts_per_second"]

    def _store_base(self, times: list[float]) -> None:
        self.details["base_batch_seconds"] = _rounded(times)
        self.results["base_texts_per_second"] = _rate(self.sizes.batch, times)

    # -- mixed batch ---------------------------------------------------------------------------------------------
    def mixed_batch(self) -> None:
        """Bare base, head mixed batch and top-layer LoRA mixed batch, interleaved round by round, so drift in
        the machine's load hits all three alike."""
        engines = {kind: self.registered(kind)[0] for kind in ("head", "lora_top")}
        size = self.sizes.batch
        rows = {kind: [self.mixed_rows(kind, r) for r in range(self.sizes.repeats + self.sizes.warmup)]
                for kind in engines}
        runs: dict[str, Callable[[int], Any]] = {
            "base": lambda r: self.base.encode(self.batch_texts, batch_size=size),
            "head": lambda r: engines["head"].predict(rows["head"][r]),
            "lora_top": lambda r: engines["lora_top"].predict(rows["lora_top"][r]),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for round_ in range(self.sizes.warmup + self.sizes.repeats):
            for name, fn in runs.items():
                begun = time.perf_counter()
                fn(round_)
                if round_ >= self.sizes.warmup:
                    times[name].append(time.perf_counter() - begun)
        self._store_base(times["base"])
        base = self.results["base_texts_per_second"]
        head, lora = _rate(size, times["head"]), _rate(size, times["lora_top"])
        self.details["mixed_batch_seconds"] = _rounded(times["head"])
        self.details["mixed_batch_lora_top_seconds"] = _rounded(times["lora_top"])
        self.results.update({
            "mixed_batch_texts_per_second": head,
            "mixed_batch_ratio": _ratio(head, base),
            "mixed_batch_lora_top_texts_per_second": lora,
            "mixed_batch_ratio_lora_top": _ratio(lora, base),
            "mixed_batch_registered_users": self.sizes.registered_users,
            "mixed_batch_distinct_users_per_batch": size,
        })
        self.notes["mixed_batch"] = (
            f"{size} texts per batch, each row a different user out of {self.sizes.registered_users} resident "
            "adapters (default head; LoRA r=8 query,value on the top layer; each user its own AdapterWeights, "
            f"{2 * size} distinct parameter sets, so no two rows of a batch share tensors); base = BaseModel.encode "
            "on the same texts; rounds interleaved")

        self._distinct_user_curve(engines)

    def _distinct_user_curve(self, engines: dict[str, Any]) -> None:
        """Throughput of 128-text batches against the number of distinct users per batch (rows cycle over them)."""
        size = self.sizes.batch
        curve: dict[str, dict[str, float]] = {"base": {}, "head": {}, "lora_top": {}}
        for users in self.sizes.distinct_user_counts:
            users = min(users, size)
            rows = {kind: [(self.registered(kind)[1][i % users], text) for i, text in enumerate(self.batch_texts)]
                    for kind in engines}
            times: dict[str, list[float]] = {"base": [], "head": [], "lora_top": []}
            for round_ in range(self.sizes.warmup + self.sizes.repeats):
                for name in times:
                    begun = time.perf_counter()
                    if name == "base":
                        self.base.encode(self.batch_texts, batch_size=size)
                    else:
                        engines[name].predict(rows[name])
                    if round_ >= self.sizes.warmup:
                        times[name].append(time.perf_counter() - begun)
            for name in times:
                curve[name][str(users)] = _rate(size, times[name])
        self.results["throughput_by_distinct_users"] = curve
        self.results["throughput_ratio_by_distinct_users"] = {
            kind: {users: _ratio(rate, curve["base"][users]) for users, rate in curve[kind].items()}
            for kind in ("head", "lora_top")}

    # -- swap ----------------------------------------------------------------------------------------------------
    def swap(self) -> None:
        engine, adapters = self.registered("head")
        n = self.sizes.swap_users
        requests = [(adapters[i % len(adapters)], self.texts[i % len(self.texts)]) for i in range(n)]

        def serve_one_by_one() -> None:
            for row in requests:
                engine.predict([row])

        times = self._time(serve_one_by_one, repeats=max(1, self.sizes.repeats // 2))
        rate = _rate(n, times)
        self.details["swap_seconds"] = _rounded(times)
        self.results["swap_texts_per_second"] = rate
        self.results["swap_ratio"] = _ratio(rate, self.base_throughput())
        self.notes["swap"] = f"{n} single-row Engine.predict calls, each a different user; ratio against the bare base"

    # -- PEFT's adapter_names -------------------------------------------------------------------------------------
    def peft(self) -> None:
        try:
            self._peft()
        except Exception as error:
            logger.debug("PEFT mixed batch failed", exc_info=True)
            self.results["peft_adapter_names_texts_per_second"] = None
            self.results["peft_adapter_names_error"] = f"{type(error).__name__}: {error}"

    def _peft(self) -> None:
        import peft
        from peft import PeftModel
        from transformers import AutoModel

        from localize.store import LocalAdapterStore

        n = max(1, min(self.sizes.peft_adapters, self.sizes.batch))
        adapters = self.random_adapters("lora", {"layers": [-1]}, n, seed=3)
        store = LocalAdapterStore(self.tmp / "peft-store")
        folders = []
        for i, weights in enumerate(adapters):  # the project's own store writes PEFT's layout
            store.save(f"peft/u{i}", 1, weights)
            folders.append(store.path(f"peft/u{i}", 1))
        model = AutoModel.from_pretrained(self.base.path, local_files_only=True).eval()
        ids, mask = self.base.tokenize(self.batch_texts)
        ids, mask = ids.cpu(), mask.cpu()

        def pooled(module, **kwargs) -> torch.Tensor:
            hidden = module(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state
            return self.base.pool(hidden, mask)

        with torch.inference_mode():
            hf_times = self._time(lambda: pooled(model))
        loaded = time.perf_counter()
        peft_model = PeftModel.from_pretrained(model, str(folders[0]), adapter_name="u0")
        for i, folder in enumerate(folders[1:], start=1):
            peft_model.load_adapter(str(folder), adapter_name=f"u{i}")
        load_seconds = time.perf_counter() - loaded
        peft_model.eval()
        names = [f"u{i % n}" for i in range(len(self.batch_texts))]
        with torch.inference_mode():
            times = self._time(lambda: pooled(peft_model, adapter_names=names))
        rate = _rate(len(names), times)
        base = self.base_throughput()
        hf = _rate(len(names), hf_times)
        self.details["peft_adapter_names_seconds"] = _rounded(times)
        self.details["hf_base_seconds"] = _rounded(hf_times)
        self.results.update({
            "peft_adapter_names_texts_per_second": rate,
            "peft_adapter_names_ratio": _ratio(rate, base),
            "peft_adapters_loaded": n,
            "peft_load_adapter_ms_mean": round(1000 * load_seconds / n, 2),
            "hf_base_texts_per_second": hf,
            "peft_adapter_names_ratio_vs_hf_base": _ratio(rate, hf),
        })
        self.notes["peft"] = (
            f"peft {peft.__version__}: {n} LoRA adapters (r=8 query,value, top layer) saved by LocalAdapterStore and "
            f"loaded with PeftModel.from_pretrained + load_adapter; {len(names)} rows cycling over them via "
            "adapter_names; encoder + mean pooling only (PEFT has no per-row classification head); "
            "hf_base = the same BertModel without adapters")

    # -- fan-out -------------------------------------------------------------------------------------------------
    def fanout(self) -> None:
        """One text for every user: users are registered in the engine (their parameters copied into its slot
        banks, one slot each, so every user's weights are distinct memory the pass must read)."""
        from localize.training import TrainingArguments

        n = self.sizes.fanout_users
        texts = iter(self.texts[self.sizes.batch:] * 50)  # a new text each run, as each tweet is new
        engine, keys = self._fanout_engine({}, n, encoder=True)
        totals, lookups = [], []
        scaling: dict[str, float] = {}
        for users in sorted({*self.sizes.fanout_scaling, n}):
            if users > n:
                continue
            times = []
            for run in range(self.sizes.fanout_repeats + 1):  # the first run is a warm-up
                text = next(texts)
                begun = time.perf_counter()
                rows = [(engine.adapter(key, _not_loaded), text) for key in keys[:users]]  # resident lookups
                looked_up = time.perf_counter()
                engine.predict(rows)
                if run:
                    times.append(time.perf_counter() - begun)
                    if users == n:
                        lookups.append(looked_up - begun)
            scaling[str(users)] = round(statistics.median(times), 4)
            if users == n:
                totals = times
        burst = self.sizes.fanout_burst
        burst_texts = [next(texts) for _ in range(burst)]
        burst_times = self._time(lambda: engine.predict([(engine.adapter(k, _not_loaded), t) for t in burst_texts
                                                         for k in keys]), repeats=self.sizes.fanout_repeats)
        resident = engine.resident_bytes()
        del engine, keys
        one_text = self._time(lambda: self.base.encode([next(texts)]), repeats=max(3, self.sizes.repeats))
        users_per_second = _rate(n, totals)
        by_head: dict[str, float] = {}
        for hidden in self.sizes.fanout_head_sizes:
            small, small_keys = self._fanout_engine({"hidden": hidden}, n, encoder=False)
            text = next(texts)
            times = self._time(lambda: small.predict([(small.adapter(k, _not_loaded), text) for k in small_keys]),
                               repeats=self.sizes.fanout_repeats)
            by_head[f"{hidden} (frozen base)"] = round(10_000 / _rate(n, times), 3)
            del small, small_keys
        self.details.update({
            "fanout_seconds": _rounded(totals),
            "fanout_lookup_seconds": _rounded(lookups),
            "base_one_text_seconds": _rounded(one_text),
        })
        self.results.update({
            "fanout_users_measured": n,
            "fanout_users_per_second": users_per_second,
            "fanout_10000_seconds": round(10_000 / users_per_second, 3),
            "fanout_10000_extrapolated": n != 10_000,
            "fanout_seconds_by_users": scaling,
            "fanout_10000_seconds_by_head_hidden": {**by_head,
                                                    "0 (default: on the task prior's encoder)": round(
                                                        10_000 / users_per_second, 3)},
            "fanout_burst_texts": burst,
            "fanout_burst_user_texts_per_second": _rate(burst * n, burst_times),
            "fanout_resident_bytes": resident,
            "fanout_base_one_text_ms": round(1000 * statistics.median(one_text), 2),
        })
        self.notes["fanout"] = (
            f"one new text for {n} users of the default recipe (a linear head each, reading one shared task prior: "
            f"LoRA r=8 on the six linear maps of the top {len(TrainingArguments().method_options['layers'])} layers), "
            "each user's head in its own engine slot; time "
            "includes the per-user resident lookup; the prior's tuned layers run once for the text and the pooled "
            "vector is swept against contiguous bank slices (a matrix-vector product per weight); "
            "fanout_seconds_by_users: the same for the first N users; by_head_hidden: the same 10,000-user fan-out "
            "with heads on the frozen base (hidden 0: linear; 32: a small MLP); "
            f"burst: {burst} texts at once for every user (each user's weights read once)"
            + (f"; fanout_10000_seconds extrapolated linearly from {n} users" if n != 10_000 else ""))

    def _fanout_engine(self, options: dict, n: int, *, encoder: bool):
        """An engine with ``n`` resident head users; with ``encoder`` they all read one shared task prior."""
        from localize.engine import Engine
        from localize.training import recommended_options

        adapters = self.random_adapters("head", options, n, distinct=self.sizes.fanout_distinct, seed=4)
        engine = Engine(self.base, capacity=max(n + 1, 1))
        if encoder:
            (prior,) = self.random_adapters("lora", recommended_options("lora"), 1, seed=5)
            prior = engine.adapter(("fanout", "prior"), lambda: prior)
            for weights in adapters:
                weights.encoder = prior
        keys = [("fanout", i) for i in range(n)]
        with _torch_threads(1):  # registration copies many small tensors: threads only add overhead
            for key, weights in zip(keys, adapters):
                engine.adapter(key, lambda w=weights: w)
        return engine, keys

    # -- training ------------------------------------------------------------------------------------------------
    def train(self) -> None:
        from localize.activations import ActivationCache
        from localize.demo_data import JOHN, LABELS, demo_rows
        from localize.training import Trainer, TrainingArguments

        rows = demo_rows(n_per_user=self.sizes.train_texts, seed=7, users=(JOHN,))
        texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
        args = TrainingArguments()
        prior = self.task_prior()
        # Untimed: one small run pays the process's one-time costs (lazy imports, the accelerator).
        Trainer(self.base, TrainingArguments(max_epochs=1), texts[:40], labels[:40], LABELS,
                cache=ActivationCache(), init=prior).train()

        def timed(cache: ActivationCache) -> dict[str, float]:
            begun = time.perf_counter()
            trainer = Trainer(self.base, args, texts, labels, LABELS, cache=cache, init=prior)
            trainer.prepare()
            prepared = time.perf_counter()
            trainer.fit()
            trainer.result()
            done = time.perf_counter()
            return {"seconds": done - begun, "prepare_seconds": prepared - begun, "fit_seconds": done - prepared,
                    "epochs": trainer.metrics["epochs"], "val_macro_f1": trainer.metrics.get("val_macro_f1"),
                    "train_rows": trainer.metrics["train_rows"]}

        caches = [ActivationCache() for _ in range(self.sizes.train_repeats)]
        cold = [timed(cache) for cache in caches]
        # Warm: another user has already trained on the same texts, so the cache holds exactly their activations.
        warm = [timed(caches[-1]) for _ in range(self.sizes.train_repeats)]
        cold_s = statistics.median(r["seconds"] for r in cold)
        warm_s = statistics.median(r["seconds"] for r in warm)
        self.details["train_cold"] = [_round_dict(r) for r in cold]
        self.details["train_warm"] = [_round_dict(r) for r in warm]
        self.results.update({
            "train_500_seconds": round(cold_s, 3),
            "train_500_warm_seconds": round(warm_s, 3),
            "adapters_per_hour": round(3600 / warm_s, 1),
            "train_500_epochs": cold[0]["epochs"],
            "train_500_val_macro_f1": _round(cold[0]["val_macro_f1"]),
            "train_500_prepare_seconds": round(statistics.median(r["prepare_seconds"] for r in cold), 3),
            "train_500_fit_seconds": round(statistics.median(r["fit_seconds"] for r in cold), 3),
        })
        self.notes["train"] = (
            f"{len(texts)} labelled demo tweets (user john), TrainingArguments() defaults: a linear head on the task "
            f"prior's encoding (prior: {args.method} on the top {len(args.method_options['layers'])} layers, trained "
            f"untimed beforehand), fitted by {args.head_fit}; cold = fresh ActivationCache (the texts go through the frozen "
            "layers and the prior's tuned layers), warm = the cache already holds the texts' encodings (another user "
            "of the task labelled them); adapters_per_hour = 3600 / warm seconds")
        if self.sizes.naive_peft:
            naive = self._naive_peft(texts, labels, LABELS)
            self.results["naive_peft_lora_500_seconds"] = round(naive, 3)
            self.results["train_500_speedup_vs_naive_peft"] = _ratio(naive, cold_s)
            self.notes["naive_peft"] = (
                f"plain PEFT LoRA r=8 on query,value of the BertModel + linear head on mean pooling, "
                f"{self.sizes.naive_epochs} epochs of {len(texts)} texts, batch 32, AdamW lr 2e-3; one run")

        self._train_scaling()

    def task_prior(self):  # noqa: ANN201
        """The default recipe's task prior, trained once (one epoch) on John's and Jane's pooled demo labels."""
        if self._prior is None:
            from localize.activations import ActivationCache
            from localize.demo_data import JANE, JOHN, LABELS, demo_rows
            from localize.training import Trainer, TrainingArguments

            rows = demo_rows(n_per_user=300, seed=31, users=(JOHN, JANE))
            args = dataclasses.replace(TrainingArguments().for_prior(), max_epochs=1)
            self._prior = Trainer(self.base, args, [r["text"] for r in rows], [r["label"] for r in rows], LABELS,
                                  cache=ActivationCache()).train()
        return self._prior

    def _train_scaling(self) -> None:
        """Training time (fresh activation cache) against labels per user: cost must grow no faster than linearly."""
        from localize.activations import ActivationCache
        from localize.demo_data import JOHN, LABELS, demo_rows
        from localize.training import Trainer, TrainingArguments

        table = {}
        for count in self.sizes.train_scaling:
            rows = demo_rows(n_per_user=count, seed=17, users=(JOHN,))
            texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
            begun = time.perf_counter()
            trainer = Trainer(self.base, TrainingArguments(), texts, labels, LABELS, cache=ActivationCache(),
                              init=self.task_prior())
            trainer.prepare()
            prepared = time.perf_counter()
            trainer.fit()
            trainer.result()
            done = time.perf_counter()
            table[str(count)] = {"seconds": round(done - begun, 3), "encode_seconds": round(prepared - begun, 3),
                                 "fit_seconds": round(done - prepared, 3), "epochs": trainer.metrics["epochs"],
                                 "ms_per_label": round(1000 * (done - begun) / count, 2)}
        self.results["train_seconds_by_labels"] = table

    def _naive_peft(self, texts: list[str], labels: list[str], label_set: list[str]) -> float:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModel

        torch.manual_seed(0)
        begun = time.perf_counter()
        model = AutoModel.from_pretrained(self.base.path, local_files_only=True)
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]))
        head = torch.nn.Linear(self.base.dims.hidden_size, len(label_set))
        trainable = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
        optimizer = torch.optim.AdamW(trainable, lr=2e-3)
        targets = torch.tensor([label_set.index(label) for label in labels])
        model.train()
        for epoch in range(self.sizes.naive_epochs):
            order = torch.randperm(len(texts)).tolist()
            for start in range(0, len(texts), 32):
                batch = order[start : start + 32]
                ids, mask = self.base.tokenize([texts[i] for i in batch])
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
                loss = torch.nn.functional.cross_entropy(head(self.base.pool(hidden, mask)), targets[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return time.perf_counter() - begun

    # -- adapter load --------------------------------------------------------------------------------------------
    def adapter_load(self) -> None:
        from localize.engine import Engine
        from localize.store import LocalAdapterStore

        n = self.sizes.load_adapters
        store = LocalAdapterStore(self.tmp / "load-store")
        adapters = self.random_adapters("head", {}, n + 1, seed=5)
        stored = [store.save(f"task-1/user-{i}", 1, weights) for i, weights in enumerate(adapters)]
        engine = Engine(self.base, capacity=max(2 * n + 2, 1))

        def load(i: int, key: str, hashes: bool) -> float:
            begun = time.perf_counter()
            engine.adapter((key, i), lambda: store.load(stored[i].key, 1,
                                                       expected_hashes=stored[i].files if hashes else None))
            return time.perf_counter() - begun

        load(n, "warm-up", True)  # untimed: first-use imports
        checked = [load(i, "checked", True) for i in range(n)]
        unchecked = [load(i, "unchecked", False) for i in range(n)]
        nbytes = adapters[0].nbytes
        self.details["adapter_load_ms"] = [round(1000 * t, 3) for t in checked]
        self.results.update({
            "adapter_load_ms_p50": round(1000 * _percentile(checked, 50), 3),
            "adapter_load_ms_p95": round(1000 * _percentile(checked, 95), 3),
            "adapter_load_unchecked_ms_p50": round(1000 * _percentile(unchecked, 50), 3),
            "adapters_loaded": n,
            "resident_adapter_bytes": nbytes,
            "stored_adapter_bytes": stored[0].nbytes,
            "resident_adapters_max": RESIDENT_BUDGET_BYTES // nbytes,
            "resident_budget_bytes": RESIDENT_BUDGET_BYTES,
        })
        self.notes["adapter_load"] = (
            f"{n} stored default (head) adapters, each LocalAdapterStore.load with the sha256 check the serving "
            "path uses + Engine.adapter under a fresh key (unchecked: without the hash check); files were just "
            "written, so they are in the OS page cache; resident_adapters_max = 1 GiB / AdapterWeights.nbytes "
            "(tensor bytes only)")

    # -- cold start ----------------------------------------------------------------------------------------------
    def cold_start(self) -> None:
        home = self.tmp / "cold-home"
        text = self._prepare_cold_home(home)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALIZE_") and k != "DATABASE_URL"}
        env.update({"LOCALIZE_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "PYTHONUNBUFFERED": "1"})
        runs = []
        for _ in range(self.sizes.cold_start_repeats):
            env["LOCALIZE_BENCH_SPAWN"] = repr(time.time())
            begun = time.perf_counter()
            child = subprocess.run([sys.executable, "-c", _COLD_START_CHILD, text], env=env, capture_output=True,
                                   text=True, timeout=300, check=False)
            wall = time.perf_counter() - begun
            if child.returncode != 0:
                raise RuntimeError(f"cold-start child exited {child.returncode}: {child.stderr[-2000:]}")
            report = json.loads(child.stdout.strip().splitlines()[-1])
            report["process_wall_seconds"] = wall  # includes the interpreter's shutdown
            runs.append(report)
        # Baseline from the same run: a bare interpreter that only imports torch, the floor of any torch server.
        floor = []
        for _ in range(self.sizes.cold_start_repeats):
            begun = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import torch"], env=env, check=True, timeout=300)
            floor.append(time.perf_counter() - begun)
        self.results["cold_start_torch_import_seconds"] = round(statistics.median(floor), 3)
        keys = ["interpreter_seconds", "import_seconds", "db_upgrade_seconds", "base_load_seconds",
                "first_prediction_seconds", "total_seconds", "process_wall_seconds"]
        median = {key: round(statistics.median(r[key] for r in runs), 3) for key in keys}
        self.details["cold_start_runs"] = [_round_dict(r) for r in runs]
        self.results["cold_start_seconds"] = median["total_seconds"]
        self.results["cold_start_breakdown"] = median
        self.notes["cold_start"] = (
            "a fresh `python -c` child on a temp home with one trained head adapter: imports localize, builds a "
            "Runtime (schema upgrade, as every front door does), loads the base, serves one prediction through "
            "services.predictions.predict; cold_start_seconds = spawn to first prediction (the child reports "
            "wall-clock stages as JSON); the base model files are in the OS page cache; baseline "
            "cold_start_torch_import_seconds: a child that only runs `import torch` (spawn to exit)")

    def _prepare_cold_home(self, home: Path) -> str:
        from localize.db.session import session_scope
        from localize.demo_data import JOHN, LABELS, demo_rows
        from localize.runtime import Runtime
        from localize.services import adapters as adapter_service
        from localize.services.tasks import create_task
        from localize.services.users import create_user
        from localize.settings import Settings
        from localize.training import Trainer, TrainingArguments

        runtime = Runtime(Settings(home=home, database_url=None, adapter_store=None, base_model=None))
        runtime.upgrade_database()
        rows = demo_rows(n_per_user=120, seed=11, users=(JOHN,))
        weights = Trainer(self.base, TrainingArguments(max_epochs=20), [r["text"] for r in rows],
                          [r["label"] for r in rows], LABELS).train()
        with session_scope(runtime.database) as session:
            task = create_task(session=session, name="bench", labels=LABELS)
            user = create_user(session=session, name="john")
            stored = runtime.store.save(adapter_service.store_key(task, user), 1, weights)
            adapter_service.register_version(session=session, task=task, user=user, weights=weights, stored=stored,
                                             n_labels=len(rows), labels_updated_at=None, activate=True)
        runtime.database.dispose()
        return self.texts[-1]


    # -- int8 ----------------------------------------------------------------------------------------------------
    def int8(self) -> None:
        """torch dynamic int8 base vs the float32 base: encode speed on the same texts (interleaved), and accuracy
        of one adapter trained on the float32 base, served by each (the serving default flips only if both pay)."""
        from localize.base_model import BaseModel
        from localize.demo_data import JOHN, LABELS, demo_rows
        from localize.engine import Engine
        from localize.training import Trainer, TrainingArguments

        quantized = BaseModel(self.base.path, quantization="int8", device="cpu", max_seq_length=self.base.max_seq_length)
        times: dict[str, list[float]] = {"float32": [], "int8": []}
        for round_ in range(self.sizes.warmup + self.sizes.repeats):
            for name, model in (("float32", self.base), ("int8", quantized)):
                begun = time.perf_counter()
                model.encode(self.batch_texts, batch_size=self.sizes.batch)
                if round_ >= self.sizes.warmup:
                    times[name].append(time.perf_counter() - begun)
        rows = demo_rows(n_per_user=self.sizes.train_texts + self.sizes.int8_test_texts, seed=23, users=(JOHN,))
        train, test = rows[: self.sizes.train_texts], rows[self.sizes.train_texts :]
        weights = Trainer(self.base, TrainingArguments(), [r["text"] for r in train], [r["label"] for r in train],
                          LABELS).train()
        accuracy = {}
        for name, model in (("float32", self.base), ("int8", quantized)):
            predictions = Engine(model).predict([(weights, r["text"]) for r in test])
            accuracy[name] = sum(p.label == r["label"] for p, r in zip(predictions, test)) / len(test)
        speedup = statistics.median(times["float32"]) / statistics.median(times["int8"])
        delta = 100 * (accuracy["int8"] - accuracy["float32"])
        self.details["int8_encode_seconds"] = {name: _rounded(t) for name, t in times.items()}
        self.results.update({
            "int8_speedup": round(speedup, 3),
            "int8_accuracy_delta": round(delta, 2),
            "int8_accuracy": round(accuracy["int8"], 4),
            "float32_accuracy": round(accuracy["float32"], 4),
            "int8_test_texts": len(test),
            "int8_default_for_serving": speedup > 1 and delta > -0.5,
        })
        self.notes["int8"] = (
            f"torch.ao dynamic int8 on every encoder Linear vs float32, {self.sizes.batch}-text batches interleaved; "
            f"accuracy: the default adapter trained on {len(train)} demo labels (john) with the float32 base, served "
            f"on {len(test)} held-out demo tweets by each base; delta in points (int8 - float32)")

    # -- HTTP serving --------------------------------------------------------------------------------------------
    def serve(self) -> None:
        """32 concurrent HTTP clients on loopback against a real server per micro-batch window: latency and rate."""
        home = self.tmp / "serve-home"
        users = self._prepare_serve_home(home, self.sizes.http_clients)
        by_window = {}
        for window in self.sizes.http_windows_ms:
            by_window[f"{window:g}"] = self._serve_run(home, users, window)
        chosen = by_window[f"{self.sizes.http_windows_ms[-1] if 2.0 not in self.sizes.http_windows_ms else 2.0:g}"]
        self.results.update({
            "predict_p50_ms": chosen["p50_ms"],
            "predict_p99_ms": chosen["p99_ms"],
            "predict_rps": chosen["rps"],
            "predict_by_batch_window_ms": by_window,
        })
        self.notes["serve"] = (
            f"uvicorn subprocess (the API app, no worker) on 127.0.0.1; {self.sizes.http_clients} client threads "
            f"(httpx, keep-alive), each {self.sizes.http_requests_per_client} sequential POST "
            "/tasks/{task}/users/{user}/predict with one new text for its own user (default head adapter); "
            "predict_* are for LOCALIZE_BATCH_WINDOW_MS=2 (the default); predict_by_batch_window_ms gives the "
            "trade-off (0 = no merging)")

    def _prepare_serve_home(self, home: Path, count: int) -> list[str]:
        from localize.db.session import session_scope
        from localize.demo_data import LABELS
        from localize.runtime import Runtime
        from localize.services import adapters as adapter_service
        from localize.services.tasks import create_task
        from localize.services.users import create_user
        from localize.settings import Settings

        runtime = Runtime(Settings(home=home, database_url=None, adapter_store=None, base_model=None))
        runtime.upgrade_database()
        names = [f"trader{i}" for i in range(count)]
        with session_scope(runtime.database) as session:
            task = create_task(session=session, name="bench", labels=LABELS)
            for name, weights in zip(names, self.random_adapters("head", {}, count, seed=8)):
                user = create_user(session=session, name=name)
                stored = runtime.store.save(adapter_service.store_key(task, user), 1, weights)
                adapter_service.register_version(session=session, task=task, user=user, weights=weights,
                                                 stored=stored, n_labels=0, labels_updated_at=None, activate=True)
        runtime.database.dispose()
        return names

    def _serve_run(self, home: Path, users: list[str], window: float) -> dict[str, float]:
        import socket
        import threading

        import httpx

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        key = "lk_admin_bench"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALIZE_") and k != "DATABASE_URL"}
        env.update({"LOCALIZE_HOME": str(home), "LOCALIZE_ADMIN_KEY": key, "LOCALIZE_BATCH_WINDOW_MS": str(window),
                    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "localize.api.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {server.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
            texts = self.texts
            for name in users:  # warm-up: base loaded, every adapter resident
                response = httpx.post(f"{url}/tasks/bench/users/{name}/predict", json={"texts": [texts[0]]},
                                      headers=headers, timeout=120)
                response.raise_for_status()
            latencies: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            barrier = threading.Barrier(len(users) + 1)

            def client(index: int, name: str) -> None:
                with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
                    barrier.wait()
                    for request in range(self.sizes.http_requests_per_client):
                        text = texts[(index * self.sizes.http_requests_per_client + request) % len(texts)]
                        begun = time.perf_counter()
                        response = http.post(f"/tasks/bench/users/{name}/predict", json={"texts": [text]})
                        elapsed = time.perf_counter() - begun
                        with lock:
                            if response.status_code == 200:
                                latencies.append(elapsed)
                            else:
                                errors.append(f"{response.status_code}: {response.text[:200]}")

            threads = [threading.Thread(target=client, args=(i, name)) for i, name in enumerate(users)]
            for thread in threads:
                thread.start()
            barrier.wait()
            begun = time.perf_counter()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - begun
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        if errors:
            raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
        return {"p50_ms": round(1000 * _percentile(latencies, 50), 1), "p99_ms": round(1000 * _percentile(latencies, 99), 1),
                "rps": round(len(latencies) / wall, 1), "requests": len(latencies)}


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


# The child of the cold-start benchmark; argv[1] is the text to classify. Stages are wall-clock times
# (time.time), since the start is taken in the parent.
_COLD_START_CHILD = r"""
import time
started = time.time()
import json, os, sys
from localize.db.session import session_scope
from localize.runtime import Runtime
from localize.services.predictions import PredictionRequest, predict
from localize.settings import Settings
imported = time.time()
runtime = Runtime(Settings())
runtime.upgrade_database()
upgraded = time.time()
runtime.base
based = time.time()
with session_scope(runtime.database) as session:
    result = predict(session=session, runtime=runtime,
                     requests=[PredictionRequest(user="john", task="bench", text=sys.argv[1])])
predicted = time.time()
spawned = float(os.environ["LOCALIZE_BENCH_SPAWN"])
print(json.dumps({
    "interpreter_seconds": started - spawned, "import_seconds": imported - started,
    "db_upgrade_seconds": upgraded - imported, "base_load_seconds": based - upgraded,
    "first_prediction_seconds": predicted - based, "total_seconds": predicted - spawned,
    "label": result[0].label,
}), flush=True)
"""


# -- report --------------------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    import peft
    import transformers

    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "load_average_before": _load_average(),
    }


def goal_report(results: dict[str, Any]) -> list[dict[str, Any]]:
    report = []
    for metric, op, goal in GOALS:
        value = results.get(metric)
        met = None if not isinstance(value, (int, float)) else {"<": value < goal, "<=": value <= goal,
                                                                ">=": value >= goal}[op]
        report.append({"metric": metric, "value": value, "goal": f"{op} {goal:g}", "met": met})
    return report


def print_report(results: dict[str, Any], console: Console) -> None:
    machine = results["machine"]
    console.print_json(json.dumps(results, default=str))
    table = Table("metric", "value", "goal", "met?", title="localize bench" + (" (quick)" if results["quick"] else ""))
    goals = {row["metric"]: row for row in results["goals"]}
    skip = {"quick", "total_seconds", "base_load_seconds"}
    for metric, value in results.items():
        if metric in skip or isinstance(value, (dict, list)) or metric in goals:
            continue
        table.add_row(metric, _show(value), "", "")
    for metric, row in goals.items():
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[row["met"]]
        table.add_row(f"[bold]{metric}[/bold]", _show(row["value"]), row["goal"], met)
    console.print(table)
    if "cold_start_breakdown" in results:
        breakdown = Table("cold start stage", "seconds")
        for stage, seconds in results["cold_start_breakdown"].items():
            breakdown.add_row(stage, f"{seconds:.3f}")
        console.print(breakdown)
    console.print(f"machine: {machine['cpu_count']} CPUs ({machine['processor']}), torch {machine['torch']} with "
                  f"{machine['torch_threads']} threads; other processes used {machine.get('other_processes_cores')} "
                  f"cores on average, load average before {machine['load_average_before']} after "
                  f"{machine.get('load_average_after')}; total {results.get('total_seconds')} s")
    for warning in results.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for name, error in results.get("errors", {}).items():
        console.print(f"[red]{name} failed:[/red] {error}")


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


# -- small helpers -------------------------------------------------------------------------------------------------
def _rate(items: int, times: list[float]) -> float:
    return round(items / statistics.median(times), 2)


def _ratio(value: float | None, baseline: float | None) -> float | None:
    return None if not value or not baseline else round(value / baseline, 3)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _round(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def _rounded(times: list[float]) -> list[float]:
    return [round(t, 4) for t in times]


def _round_dict(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _round(v) for k, v in values.items()}


class _CpuShare:
    """How many cores other processes kept busy since creation: all CPU time (/proc/stat) minus this process's
    and its children's."""

    def __init__(self) -> None:
        self.start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        except (OSError, ValueError, IndexError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        own = os.times()
        return busy, own.user + own.system + own.children_user + own.children_system, time.perf_counter()

    def others(self) -> float | None:
        end = self._snapshot()
        if self.start is None or end is None or end[2] <= self.start[2]:
            return None
        busy, own, wall = (b - a for a, b in zip(self.start, end))
        return round(max(0.0, busy - own) / wall, 2)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
