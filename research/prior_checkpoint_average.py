"""Whether a task prior whose LoRA and head are averaged over its last epochs (checkpoint averaging along one run, as
stochastic weight averaging does) serves users' MAP heads better than the epoch the product keeps, judged on the
recipe choice's held-out rows (train rows only). For each of the choice's folds by text, the production prior is
trained on the fold's training texts for all of its epochs, its parameters kept after each; variants: the epoch the
product's rule keeps (the lowest validation loss before the first epoch that does not lower it), the average from that
epoch to the last, the average of every epoch, the last epoch. Every user's MAP head (the product's defaults, without
calibration) is fitted on each variant's encoding of their rows and scores their held-out rows. Printed: each variant
as the choice scores (the mean of users' accuracy and macro-F1), and its paired difference per user from the
product's epoch.

    python research/prior_checkpoint_average.py --data ../shared/data/hs_brexit

Status: not adopted (reports/findings.md, round 23): no variant gained across seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.recipe_choice import held_out_splits
from localize.training import Trainer
from localize.training_args import TrainingArguments
from user_heads import fit_user_map_head, print_paired_difference, score_table


def product_epoch(history: list[dict[str, float]], patience: int) -> int:
    """The epoch the product keeps: it stops once ``patience`` epochs in a row have not lowered validation loss."""
    best, best_epoch, stale = None, 1, 0
    for record in history:
        if best is None or record["val_loss"] < best:
            best, best_epoch, stale = record["val_loss"], record["epoch"], 0
        else:
            stale += 1
            if stale >= patience:
                break
    return best_epoch


def averaged(snapshots: list[dict], epochs: list[int]) -> dict:
    chosen = [snapshots[e - 1] for e in epochs]
    return {part: {name: sum(s[part][name] for s in chosen) / len(chosen) for name in chosen[0][part]}
            for part in ("params", "head")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    data, base = load_eval_data(options.data), get_base_model()
    rows, labels = data.train, data.labels
    texts = sorted({r.text for r in rows})
    users = sorted({r.user for r in rows})
    defaults = TrainingArguments(seed=options.seed)
    patience = defaults.for_prior().patience
    truth: dict[str, list[int]] = {u: [] for u in users}
    predicted: dict[tuple[str, str], list[int]] = {}
    splits = held_out_splits(texts)
    variant_names: list[str] = []
    for fold, held in enumerate(splits):
        started = time.time()
        train_rows = [r for r in rows if r.text not in held]
        snapshots: list[dict] = []
        trainer: Trainer | None = None

        def keep(fraction: float, message: str) -> None:
            if len(trainer.history) > len(snapshots):  # an epoch has just ended
                snapshots.append(trainer.adapter.snapshot())

        # Every epoch runs (patience past the cap); the product's epoch is found from the history afterwards.
        args = dataclasses.replace(defaults, prior_patience=100).for_prior()
        trainer = Trainer(base, args, [r.text for r in train_rows], [r.label for r in train_rows], labels,
                          cache=ActivationCache(max_bytes=4 << 30), annotators=[r.user for r in train_rows],
                          progress=keep)
        trainer.fit()
        kept = product_epoch(trainer.history, patience)
        last = len(snapshots)
        variants = {"product's epoch": [kept], "average from the product's epoch": list(range(kept, last + 1)),
                    "average of every epoch": list(range(1, last + 1)), "last epoch": [last]}
        losses = ", ".join(f"{r['val_loss']:.4f}" for r in trainer.history)
        print(f"fold {fold + 1}: {last} epochs in {time.time() - started:.0f} s, validation losses {losses}; "
              f"the product keeps epoch {kept}", flush=True)
        encodings, centers = {}, {}
        for index, (name, epochs) in enumerate(variants.items()):
            trainer.adapter.restore(averaged(snapshots, epochs))
            prior = trainer.result()
            encodings[index] = dict(zip(texts, ActivationCache(max_bytes=4 << 30).encoded(base, prior, texts,
                                                                                           batch_size=128)))
            centers[index] = {k: v.detach().clone() for k, v in prior.head.items()}
        variant_names = list(variants)
        for user in users:
            own = [r for r in train_rows if r.user == user]
            scored = [r for r in rows if r.user == user and r.text in held]
            if len(own) < defaults.min_labels or not scored:
                continue
            truth[user].extend(labels.index(r.label) for r in scored)
            for index, name in enumerate(variant_names):
                weight, bias = fit_user_map_head(encodings[index], own, labels, centers[index], defaults)
                logits = torch.stack([encodings[index][r.text] for r in scored]) @ weight.T + bias
                predicted.setdefault((user, name), []).extend(logits.argmax(1).tolist())
    table = score_table(truth, predicted, variant_names, len(labels))
    for name in variant_names[1:]:
        print_paired_difference(f"{name} minus the product's epoch", table[name], table[variant_names[0]])

if __name__ == "__main__":
    main()
