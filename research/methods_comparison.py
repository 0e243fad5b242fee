"""Every registered adapter method, with and without its task prior, on the first users of a data set.

The report (`localize eval --report`) runs the default and the head variants on many users; methods that run the
encoder per user (LoRA, IA3, prompt tuning, P-tuning v2 prefixes) cost minutes per user on a CPU, so this script
compares them on the first ``--users`` users by id, each method's prior trained on every user's pooled train rows
as the platform trains it, with the report's short schedule for encoder methods (max 8 epochs, patience 3, prior
3 epochs). The default recipe and two baselines run on the same users. Writes a markdown table (``--out``).
Usage:

    python research/methods_comparison.py --data ../shared/data/hs_brexit --users 3 \\
        --out reports/methods_by_adapter.md
    python research/methods_comparison.py --data ../shared/data/hs_brexit --users 3 --variants \\
        --out reports/method_variants.md
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.evaluation.harness import Harness, MethodResult, Recipe
from localize.evaluation.recipes import ENCODER_METHOD_EPOCHS, default_recipe
from localize.training_args import TrainingArguments

METHODS = [  # (name, method, options): each method's own defaults, as `localize train --method M` trains it
    ("head (linear)", "head", {}),
    ("lora r8 q,v all layers", "lora", {}),
    ("ia3 all layers", "ia3", {}),
    ("prompt tuning 8 tokens", "prompt_tuning", {}),
    ("p-tuning v2 prefix 8 x all layers", "prefix_tuning", {}),
]
TOP_TWO = [-2, -1]
VARIANTS = [  # --variants: rank, target layers, prefix length; trained without a prior (the head variants and
    # LoRA on the six maps of the default prior's layers are in the report)
    ("lora r4 q,v all layers", "lora", {"r": 4, "alpha": 8.0}),
    ("lora r16 q,v all layers", "lora", {"r": 16, "alpha": 32.0}),
    ("lora r8 q,v top 2 layers", "lora", {"layers": TOP_TWO}),
    ("ia3 top 2 layers", "ia3", {"layers": TOP_TWO}),
    ("p-tuning v2 prefix 4 x all layers", "prefix_tuning", {"num_virtual_tokens": 4}),
    ("p-tuning v2 prefix 16 x all layers", "prefix_tuning", {"num_virtual_tokens": 16}),
    ("p-tuning v2 prefix 8 x top 2 layers", "prefix_tuning", {"layers": TOP_TWO}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--users", type=int, default=3, help="the first N users by id")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", action="store_true",
                        help="compare the methods' variants (rank, layers, prefix length), not the methods")
    options = parser.parse_args()
    data = load_eval_data(options.data)
    started = time.perf_counter()
    harness = Harness(data, get_base_model(), cache=ActivationCache(max_bytes=12 << 30),
                      progress=lambda m: print(f"[{time.perf_counter() - started:6.0f}s] {m}", flush=True))
    harness.encode_all(write=False)
    users = options.users
    recipes = [Recipe(default_recipe().name, default_recipe().args, "what `localize train` does", max_users=users)]
    for name, method, method_options in VARIANTS if options.variants else METHODS:
        for prior in (False,) if options.variants else (False, True):
            schedule = {} if method == "head" else ENCODER_METHOD_EPOCHS
            args = TrainingArguments(method=method, method_options=method_options, init_from_prior=prior, **schedule)
            recipes.append(Recipe(f"{name}{' + prior' if prior else ''}", args, max_users=users))
    results: list[MethodResult] = []
    for baseline in ("stacked_lr", "per_user_lr"):
        result = harness.run_baseline(baseline)
        result.users = result.users[:users]
        results.append(result)
    for recipe in recipes:
        results.append(harness.run_recipe(recipe))
        row = results[-1].users
        print(f"{recipe.name}: accuracy {np.mean([u.accuracy for u in row]):.3f}, "
              f"macro-F1 {np.mean([u.macro_f1 for u in row]):.3f}", flush=True)
        # Rewritten after every recipe: a run cut short still leaves the rows it finished.
        write_table(options.out, results, "Adapter method variants" if options.variants else "Every adapter method",
                    data.name, data.users[:users], time.perf_counter() - started,
                    complete=len(results) == len(recipes) + 2)
    print(f"wrote {options.out}")


def write_table(out: Path, results: list[MethodResult], title: str, data_name: str, users: list[str], seconds: float,
                complete: bool) -> None:
    lines = [
        f"# {title} on {data_name}, first {len(users)} users",
        "",
        f"Generated by `python {' '.join(sys.argv)}` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, CPU, {seconds:.0f} s{'' if complete else ', still running'}). Same protocol as "
        "[accuracy.md](accuracy.md), on the first users by id only: encoder methods cost minutes per user here. "
        "Encoder methods train at most 8 epochs (patience 3), their priors 3 epochs, on every user's pooled "
        "train rows; head rows use the normal schedule. Users: " + ", ".join(users) + ".",
        "",
        "| method | users | accuracy | macro-F1 | train s / user | prior s (once) | adapter bytes / user |",
        "|---|---|---|---|---|---|---|",
    ]
    for result in results:
        rows = result.users
        prior = f"{result.prior_seconds:.0f}" if result.prior_seconds is not None else ""
        name = f"**{result.name}**" if result.name.startswith("default") else result.name
        lines.append(f"| {name} | {len(rows)} | {np.mean([u.accuracy for u in rows]):.3f} | "
                     f"{np.mean([u.macro_f1 for u in rows]):.3f} | {np.mean([u.train_seconds for u in rows]):.1f} | "
                     f"{prior} | {int(np.mean([u.adapter_bytes for u in rows])):,} |")
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
