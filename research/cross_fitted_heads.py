"""Research script: cross-fitted per-user heads on a trained task prior, and decision thresholds chosen on
their out-of-fold scores.

For each qualifying user and each ``--variant`` of the default recipe's per-user arguments, trains ``--folds`` heads
on the prior's encoding, each validated (early stopping) on one stratified fold of the user's train rows, then
scores the user's test rows with: the first fold's head alone, the heads' averaged weights (one linear head, so
serving costs nothing more), their averaged probabilities, and the averaged head with its decision threshold moved
to the best out-of-fold macro-F1 or accuracy + macro-F1. Binary label sets only. The prior is a file written by
``default_recipe_sweep.py --prior FILE``. Usage:

    python research/cross_fitted_heads.py --data ../shared/data/hs_brexit --prior hs-prior.pt \\
        --variant class_weighting=none --variant class_weighting=sqrt,learning_rate=0.001
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from localize.adapters import make_method
from sklearn.metrics import accuracy_score, f1_score

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.engine import AdapterWeights
from localize.evaluation.data import load_eval_data
from localize.training import Trainer
from localize.training_args import TrainingArguments
from localize.training_rows import shuffled_by_class


class FoldTrainer(Trainer):
    """The production trainer, validated on one given stratified fold instead of a random share."""

    def __init__(self, *args, fold: int, folds: int, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fold, self.folds = fold, folds

    def _split(self) -> tuple[list[int], list[int]]:
        val: list[int] = []
        for members in shuffled_by_class(self.targets, self.args.seed):
            val += members[self.fold :: self.folds]
        held = set(val)
        return [i for i in range(len(self.texts)) if i not in held], sorted(val)


def _parse(spec: str) -> dict:
    values = dict(pair.split("=", 1) for pair in spec.split(","))
    return {k: float(v) if k in ("learning_rate", "weight_decay") else v for k, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--prior", type=Path, required=True, help="a prior saved by default_recipe_sweep.py")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variant", action="append", default=[], help="k=v[,k=v] of the users' arguments")
    options = parser.parse_args()
    data = load_eval_data(options.data)
    if len(data.labels) != 2:
        raise SystemExit("cross_fitted_heads.py handles binary label sets only")
    base = get_base_model()
    cache = ActivationCache(max_bytes=12 << 30)
    saved = torch.load(options.prior, weights_only=False)
    prior = AdapterWeights(make_method(saved["method"], saved["options"], base.dims), saved["params"], saved["head"],
                           saved["labels"], base.dims.model_id)

    def scores(truth, predicted) -> tuple[float, float]:  # noqa: ANN001
        return (accuracy_score(truth, predicted),
                f1_score(truth, predicted, average="macro", labels=[0, 1], zero_division=0))

    def best_shift(truth: np.ndarray, margin: np.ndarray, objective: str) -> float:
        grid = np.linspace(-3, 3, 61)
        values = [sum(scores(truth, (margin + s > 0).astype(int))) if objective == "mix"
                  else scores(truth, (margin + s > 0).astype(int))[1] for s in grid]
        return float(max(zip(values, -abs(grid), grid))[2])  # ties: the smallest move

    for spec in options.variant or ["class_weighting=none"]:
        args = dataclasses.replace(TrainingArguments(), **_parse(spec))
        results: dict[str, list[tuple[float, float]]] = {}
        started = time.perf_counter()
        for user in data.users:
            train, test = data.rows(user, "train"), data.rows(user, "test")
            truth, texts = np.array(data.label_index(test)), [r.text for r in test]
            heads, probabilities, oof_truth, oof_margin = [], [], [], []
            for fold in range(options.folds):
                trainer = FoldTrainer(base, args, [r.text for r in train], [r.label for r in train], data.labels,
                                      init=prior, cache=cache, fold=fold, folds=options.folds)
                trainer.train()
                heads.append({k: v.clone() for k, v in trainer.head.items()})
                probabilities.append(trainer.predict_proba(texts).numpy())
                logits = trainer._all_logits(trainer.val_split).float().numpy()
                oof_truth += trainer.val_split.targets.tolist()
                oof_margin += list(logits[:, 1] - logits[:, 0])
            trainer.head = {k: torch.stack([h[k] for h in heads]).mean(0) for k in heads[0]}
            logits = trainer._all_logits(trainer._make_split_from(texts, [0] * len(texts))).float().numpy()
            margin = logits[:, 1] - logits[:, 0]
            rows = {"first fold's head": probabilities[0].argmax(1), "averaged head": (margin > 0).astype(int),
                    "averaged probabilities": np.mean(probabilities, 0).argmax(1)}
            for objective in ("f1", "mix"):
                shift = best_shift(np.array(oof_truth), np.array(oof_margin), objective)
                rows[f"averaged head, out-of-fold threshold ({objective})"] = (margin + shift > 0).astype(int)
            for name, predicted in rows.items():
                results.setdefault(name, []).append(scores(truth, predicted))
        for name, pairs in results.items():
            accuracy, macro_f1 = np.mean(pairs, axis=0)
            print(f"{spec} | {name}: accuracy {accuracy:.4f}, macro-F1 {macro_f1:.4f}", flush=True)
        print(f"{spec}: {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
