"""How a small task's prior epoch would be chosen from the recipe choice's folds: the current rule against the
textbook one. For each of the choice's three folds by text, the production prior is trained on the fold's training
texts for all its epochs (four, or ``--epochs``; no early stopping; the learning-rate schedule spans them either
way, so epoch e of this run is the prior a run stopped at e would leave) and its own validation loss is recorded per
epoch. Printed: each fold's curve; the epoch each fold's prior picks with the product's patience of one (the best
epoch before the loss first rises); the product's rule, the latest of those; and the epoch with the lowest
validation loss averaged over the folds (cross-validation's usual choice).

    python research/prior_epoch_by_fold_curves.py --data ../shared/data/hs_brexit

Status: a diagnosis, nothing adopted (reports/findings.md, round 18). Train rows only: no test row is read.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.recipe_choice import FOLDS, choice_fold
from localize.training import Trainer
from localize.training_args import TrainingArguments


def first_rise_best(losses: list[float]) -> int:
    """The epoch (1-based) a prior with patience one keeps: the best one before the loss first rises."""
    best = 0
    for epoch in range(1, len(losses)):
        if losses[epoch] >= losses[best]:
            break
        best = epoch
    return best + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None,
                        help="the prior's epoch cap (its learning-rate schedule spans it); default: the product's (4)")
    options = parser.parse_args()
    data, base, cache = load_eval_data(options.data), get_base_model(), ActivationCache(max_bytes=4 << 30)
    rows, labels = data.train, data.labels
    texts = sorted({r.text for r in rows})
    cap = {"prior_max_epochs": options.epochs} if options.epochs else {}
    prior_args = TrainingArguments(seed=options.seed, **cap).for_prior()
    prior_args = dataclasses.replace(prior_args, patience=prior_args.max_epochs)  # every epoch, whatever the loss
    curves = []
    for fold in range(FOLDS):
        held = {t for t in texts if choice_fold(t, FOLDS) == fold}
        train_rows = [r for r in rows if r.text not in held]
        trainer = Trainer(base, prior_args, [r.text for r in train_rows], [r.label for r in train_rows], labels,
                          cache=cache, annotators=[r.user for r in train_rows])
        trainer.train()
        losses = [h["val_loss"] for h in trainer.history]
        curves.append(losses)
        print(f"fold {fold + 1}: validation loss by epoch {[round(v, 4) for v in losses]}; with patience one it "
              f"keeps epoch {first_rise_best(losses)}", flush=True)
    picks = [first_rise_best(c) for c in curves]
    mean = np.mean(np.array(curves), axis=0)
    print(f"the product's rule (latest of {picks}): epoch {max(picks)}; lowest mean loss over folds "
          f"{[round(v, 4) for v in mean]}: epoch {int(mean.argmin()) + 1}", flush=True)


if __name__ == "__main__":
    main()
