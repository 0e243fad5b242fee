"""Users' MLP heads on the task prior (``prior-mlp``), one per user against several averaged into one
(``head_ensemble``), on a per-annotator data set's test rows: whether whole-task training's ``prior-mlp`` candidate
should average heads as the demo does. One production prior (the default recipe's, trained on the train rows), then
each qualifying user's heads on it, scored on the user's test rows.

    python research/mlp_heads_averaged.py --data traders --last-epoch 4 --heads 1 5

Status: superseded (reports/findings.md, round 16): whole-task training now scores one head (``prior-mlp``) and five
averaged (``prior-mlp-averaged``) on each task's validation rows and keeps the better; this script's test-row figures
are round 15's.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.evaluation.harness import user_metrics
from localize.training import Trainer
from localize.training_args import TrainingArguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a data set folder (train and test label files)")
    parser.add_argument("--last-epoch", type=int, default=None, help="the prior's last epoch (as the choice stops it)")
    parser.add_argument("--heads", type=int, nargs="+", default=[1, 5], help="heads averaged per user, each run")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    data, base, cache = load_eval_data(options.data), get_base_model(), ActivationCache(max_bytes=4 << 30)
    default = TrainingArguments(seed=options.seed, prior_last_epoch=options.last_epoch)
    started = time.time()
    rows = data.train
    prior = Trainer(base, default.for_prior(), [r.text for r in rows], [r.label for r in rows], data.labels,
                    cache=cache, annotators=[r.user for r in rows]).train()
    print(f"prior: {time.time() - started:.0f} s", flush=True)
    users = [u for u in data.users if len(data.rows(u, "train")) >= 80 and len(data.rows(u, "test")) >= 15]
    per_user: dict[int, list[tuple[float, float]]] = {}
    for heads in options.heads:
        args = dataclasses.replace(default, head_hidden=256, head_ensemble=heads)
        started, scores = time.time(), []
        for user in users:
            train, test = data.rows(user, "train"), data.rows(user, "test")
            trainer = Trainer(base, args, [r.text for r in train], [r.label for r in train], data.labels,
                              init=prior, cache=cache)
            trainer.train()
            predicted = trainer.predict_proba([r.text for r in test]).argmax(1).numpy()
            truth = np.array([data.labels.index(r.label) for r in test])
            scores.append(user_metrics(truth, predicted))
        per_user[heads] = scores
        accuracy, macro_f1 = np.array(scores).mean(0)
        print(f"{heads} head(s): {len(users)} users, accuracy {accuracy:.3f}, macro-F1 {macro_f1:.3f} "
              f"({time.time() - started:.0f} s)", flush=True)
    if len(options.heads) > 1:
        first, last = (np.array(per_user[h]) for h in (options.heads[0], options.heads[-1]))
        diff = last - first
        se = diff.std(0, ddof=1) / np.sqrt(len(diff))
        print(f"{options.heads[-1]} against {options.heads[0]}, paired by user: accuracy {diff[:, 0].mean():+.3f} "
              f"(SE {se[0]:.3f}), macro-F1 {diff[:, 1].mean():+.3f} (SE {se[1]:.3f})")


if __name__ == "__main__":
    main()
