"""PEFT's own mixed batch (``adapter_names=[...]``) on a LoRA model with several adapters loaded: the library
baseline the engine's mixed batch is compared with."""
from __future__ import annotations

import logging
import time

import torch

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, register_benchmark
from localize.bench.stats import rate, ratio, rounded

logger = logging.getLogger(__name__)


def run(ctx: BenchContext) -> None:
    try:
        _run(ctx)
    except Exception as error:  # PEFT's API moves between versions: record the failure beside the other figures
        logger.debug("PEFT mixed batch failed", exc_info=True)
        ctx.results["peft_adapter_names_texts_per_second"] = None
        ctx.results["peft_adapter_names_error"] = f"{type(error).__name__}: {error}"


def _run(ctx: BenchContext) -> None:
    import peft
    from peft import PeftModel
    from transformers import AutoModel

    from localize.store import LocalAdapterStore

    n = max(1, min(ctx.sizes.peft_adapters, ctx.sizes.batch))
    adapters = ctx.random_adapters("lora", {"layers": [-1]}, n, seed=3)
    store = LocalAdapterStore(ctx.tmp / "peft-store")
    folders = []
    for i, weights in enumerate(adapters):  # the project's own store writes PEFT's layout
        store.save(f"peft/u{i}", 1, weights)
        folders.append(store.path(f"peft/u{i}", 1))
    model = AutoModel.from_pretrained(ctx.base.path, local_files_only=True).eval()
    ids, mask = ctx.base.tokenize(ctx.batch_texts)
    ids, mask = ids.cpu(), mask.cpu()

    def pooled(module, **kwargs) -> torch.Tensor:
        hidden = module(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state
        return ctx.base.pool(hidden, mask)

    with torch.inference_mode():
        hf_times = ctx.time(lambda: pooled(model))
    loaded = time.perf_counter()
    peft_model = PeftModel.from_pretrained(model, str(folders[0]), adapter_name="u0")
    for i, folder in enumerate(folders[1:], start=1):
        peft_model.load_adapter(str(folder), adapter_name=f"u{i}")
    load_seconds = time.perf_counter() - loaded
    peft_model.eval()
    names = [f"u{i % n}" for i in range(len(ctx.batch_texts))]
    with torch.inference_mode():
        times = ctx.time(lambda: pooled(peft_model, adapter_names=names))
    peft_rate = rate(len(names), times)
    base = ctx.base_throughput()
    hf = rate(len(names), hf_times)
    ctx.details["peft_adapter_names_seconds"] = rounded(times)
    ctx.details["hf_base_seconds"] = rounded(hf_times)
    ctx.results.update({
        "peft_adapter_names_texts_per_second": peft_rate,
        "peft_adapter_names_ratio": ratio(peft_rate, base),
        "peft_adapters_loaded": n,
        "peft_load_adapter_ms_mean": round(1000 * load_seconds / n, 2),
        "hf_base_texts_per_second": hf,
        "peft_adapter_names_ratio_vs_hf_base": ratio(peft_rate, hf),
    })
    ctx.notes["peft"] = (
        f"peft {peft.__version__}: {n} LoRA adapters (r=8 query,value, top layer) saved by LocalAdapterStore and "
        f"loaded with PeftModel.from_pretrained + load_adapter; {len(names)} rows cycling over them via "
        "adapter_names; encoder + mean pooling only (PEFT has no per-row classification head); "
        "hf_base = the same BertModel without adapters")


register_benchmark(Benchmark(
    "peft", run, "PEFT's own mixed batch (adapter_names=[...]) on a LoRA model with several adapters loaded"))
