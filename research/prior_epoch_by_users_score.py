"""Which epoch of a small task's prior serves its users best, judged on train rows only: for each of the recipe
choice's three folds by text and each prior epoch 1-4, the prior trained on the fold's training texts (as the
choice trains it, stopping on its own validation loss), every user's MAP head fitted on their rows of those texts
(the product's defaults) and scored on their held-out rows; the score is the choice's, (accuracy + macro-F1) / 2.

    python research/prior_epoch_by_users_score.py --data ../shared/data/hs_brexit

Prints each fold's figures per epoch (with the epoch the prior's own validation loss picked) and the mean over folds.
Status: a diagnosis, nothing adopted (reports/findings.md, round 10).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.recipe_choice import FOLDS, _user_scores, choice_fold
from localize.training import Trainer
from localize.training_args import TrainingArguments
from user_heads import fit_user_map_head


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    options = parser.parse_args()
    data, base, cache = load_eval_data(options.data), get_base_model(), ActivationCache(max_bytes=4 << 30)
    rows, labels = data.train, data.labels
    texts = sorted({r.text for r in rows})
    args = TrainingArguments()
    by_epoch: dict[int, list[float]] = {}
    for fold in range(FOLDS):
        held = {t for t in texts if choice_fold(t, FOLDS) == fold}
        train_rows = [r for r in rows if r.text not in held]
        for epoch in range(1, options.epochs + 1):
            started = time.perf_counter()
            trainer = Trainer(base, TrainingArguments(prior_last_epoch=epoch).for_prior(),
                              [r.text for r in train_rows], [r.label for r in train_rows], labels, cache=cache,
                              annotators=[r.user for r in train_rows])
            prior = trainer.train()
            encoded = dict(zip(texts, cache.encoded(base, prior, texts, batch_size=128)))
            center = {k: v.detach() for k, v in trainer.head.items()}
            scores = []
            for user in sorted({r.user for r in rows}):
                own = [r for r in train_rows if r.user == user]
                scored = [r for r in rows if r.user == user and r.text in held]
                if len(own) < args.min_labels or not scored:
                    continue
                weight, bias = fit_user_map_head(encoded, own, labels, center, args)
                held_x = torch.stack([encoded[r.text] for r in scored])
                predicted = (held_x @ weight.T + bias).argmax(1).tolist()
                scores.append(_user_scores([labels.index(r.label) for r in scored], predicted, len(labels)))
            accuracy, macro_f1 = np.array(scores).mean(0)
            by_epoch.setdefault(epoch, []).append((accuracy + macro_f1) / 2)
            print(f"fold {fold + 1}, epoch {epoch}: accuracy {accuracy:.3f}, macro-F1 {macro_f1:.3f}, score "
                  f"{(accuracy + macro_f1) / 2:.4f}; the prior's validation loss kept epoch "
                  f"{trainer.metrics.get('best_epoch')} ({time.perf_counter() - started:.0f} s)", flush=True)
    for epoch, scores in by_epoch.items():
        print(f"epoch {epoch}: mean score over folds {np.mean(scores):.4f}", flush=True)


if __name__ == "__main__":
    main()
