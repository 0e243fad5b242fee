"""What the speed report draws and says about figures that would otherwise surprise a reader: the throughput plot,
a note beside each surprising figure of ``speed.md``, and re-rendering the report from a saved ``bench.json``."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

THROUGHPUT_LABELS = {"base": "bare base model (no adapter)", "head": "linear head per user",
                     "lora_top": "LoRA r=8 on the top layer per user"}


def throughput_figure(curve: dict[str, dict[str, float]]) -> Any:
    """Texts per second against distinct users per batch: one tick per measured user count, the legend below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.6))
    users = [int(u) for u in next(iter(curve.values()))]
    for kind, points in curve.items():
        axes.plot([int(u) for u in points], list(points.values()), marker="o", label=THROUGHPUT_LABELS.get(kind, kind))
    axes.set_xscale("log", base=2)  # the measured counts are powers of two
    axes.set_xticks(users, [str(u) for u in users])
    axes.minorticks_off()
    axes.set_xlabel("distinct users in each batch of 128 texts")
    axes.set_ylabel("texts per second")
    top = max(v for points in curve.values() for v in points.values())
    axes.set_ylim(0, top * 1.1)
    axes.grid(alpha=0.3)
    axes.set_title("Mixed-batch throughput against users per batch")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False, fontsize=9)
    figure.tight_layout()
    return figure


def plot_throughput(curve: dict[str, dict[str, float]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure = throughput_figure(curve)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _mb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB" if value < 1e9 else f"{value / 1e9:,.1f} GB"


def _fanout_resident(r: dict[str, Any]) -> str | None:
    users, head = r.get("fanout_users_measured"), r.get("resident_adapter_bytes")
    written = f" Written: about {users:,} heads x {head:,} bytes = {_mb(users * head)}, plus one task prior." \
        if users and head else ""
    return ("address space the fan-out engine's slot banks reserved, not memory in use: on the CPU a bank reserves "
            f"every slot its LRU allows ({users + 1:,} here) when its first adapter arrives, and pages never written "
            "cost nothing. The task prior's bank reserves that many LoRA-sized slots for the one prior it holds."
            + written) if users else None


def _queueing(r: dict[str, Any]) -> str | None:
    clients, rate = (r.get("sizes") or {}).get("http_clients"), r.get("predict_rps")
    if not clients or not rate:
        return None
    return (f"{clients} clients send at once: {clients} / predict_rps = {1000 * clients / rate:,.0f} ms is the time a "
            "request waits behind the others (Little's law), so nearly all of it is queueing, not one prediction")


def _mixed_batch_ratio(r: dict[str, Any]) -> str | None:
    if r["mixed_batch_ratio"] > 1:
        return "above 1 is run-to-run noise: the adapters cost less than the noise"
    if (r.get("machine") or {}).get("device") == "cuda" and r.get("base_texts_per_second"):
        batch = (r.get("sizes") or {}).get("batch", 128)
        base_ms = 1000 * batch / r["base_texts_per_second"]
        mixed_ms = 1000 * batch / r["mixed_batch_texts_per_second"]
        return (f"on a GPU the bare base encodes a {batch}-text batch in {base_ms:.1f} ms, and the mixed batch adds "
                f"{mixed_ms - base_ms:.1f} ms of fixed work per batch (grouping rows by adapter family, gathering each "
                "row's head from its bank, small kernels, each row's answer in Python) that a CPU's encoder pass of "
                "about a second hides; the goal was set on a CPU")
    return None


def _quantized(name: str) -> Callable[[dict[str, Any]], str | None]:
    def note(r: dict[str, Any]) -> str | None:
        texts = r.get("bnb_test_texts", 0)
        return (f"points of accuracy, {name} minus float32, on {texts:,} test texts (one text is "
                f"{100 / max(texts, 1):.2f} points); the label agreement beside it says more: a gain here is noise, "
                "since quantizing only perturbs the float32 model the adapter was trained on")
    return note


# Figures whose value alone would mislead: a sentence each, shown beside the value in the "All figures" table.
NOTES: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "fanout_resident_bytes": _fanout_resident,
    "resident_adapter_bytes": lambda r: f"memory of one resident default adapter: a linear head "
                                        f"({r['resident_adapter_bytes'] // 4:,} float32 numbers, 384 weights and a "
                                        "bias per label); the task prior it reads is held once per task",
    "stored_adapter_bytes": lambda r: "the same adapter's files on disk (tensors plus its JSON manifest)",
    "resident_adapters_max": lambda r: "resident_budget_bytes / resident_adapter_bytes: heads that fit in 1 GiB",
    "adapters_per_hour": lambda r: "3600 / train_500_warm_seconds: one worker, texts already encoded by the task",
    "train_500_epochs": lambda r: "the default fits its head by L-BFGS to convergence, recorded as one epoch",
    "int8_accuracy_delta": lambda r: "points of accuracy, int8 minus float32 (negative: int8 is worse); one of the "
                                     f"{r.get('int8_test_texts', 0):,} test texts is "
                                     f"{100 / max(r.get('int8_test_texts', 1), 1):.2f} points, and a few points "
                                     "either way move between runs",
    "int8_default_for_serving": lambda r: "whether this run alone says int8 pays (faster, accuracy at most half a "
                                          "point worse); the quantization setting stays none unless an operator "
                                          "chooses int8, since one run's accuracy difference is within its noise",
    "bnb8_speedup": lambda r: "float32 time / bnb8 time on the same batches: below 1 is slower (on this 22.7 "
                              "M-parameter base, bitsandbytes' 8-bit products cost more than float32's)",
    "bnb4_speedup": lambda r: "float32 time / bnb4 time: below 1 is slower (the 4-bit weights are unpacked at every "
                              "product)",
    "bnb8_weight_bytes": lambda r: "the encoder's stored parameters; the embeddings (11.9 M of the 22.7 M numbers) "
                                   "stay float32, so quantizing the layers saves about a third, not three quarters",
    "bnb8_accuracy_delta": _quantized("bnb8"),
    "bnb4_accuracy_delta": _quantized("bnb4"),
    "swap_ratio": lambda r: "one row per call, each a different user, against the bare base in full batches",
    "mixed_batch_ratio": lambda r: _mixed_batch_ratio(r),
    "predict_p50_ms": lambda r: _queueing(r),
    "fanout_10000_extrapolated": lambda r: "10,000 users were measured, not extrapolated" if
        r.get("fanout_10000_extrapolated") is False else "measured on fewer users and scaled linearly",
    "cold_start_torch_import_seconds": lambda r: "the floor: a process that only imports torch",
}


def figure_notes(results: dict[str, Any]) -> dict[str, str]:
    """The note for each surprising figure present in ``results``."""
    notes = {}
    for key, explain in NOTES.items():
        if key in results:
            note = explain(results)
            if note:
                notes[key] = note
    return notes


def rerender(bench_json: Path, folder: Path | None = None) -> list[Path]:
    """``speed.md`` and its plot again from a saved ``bench.json`` (nothing is re-measured)."""
    from localize.bench.report import write_report
    from localize.errors import ValidationError

    results = json.loads(bench_json.read_text())
    if not isinstance(results, dict) or "machine" not in results:
        raise ValidationError(f"{bench_json} is not a bench.json written by `localize bench`")
    written = write_report(results, folder or bench_json.parent)
    return [path for path in written if path != bench_json]  # the saved figures are read, never rewritten
