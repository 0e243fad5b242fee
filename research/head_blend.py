"""Whether a user's linear MAP head (``prior-head``) and five averaged MLP heads (``prior-mlp-averaged``), both on the
same task prior, do better together than either alone: each user's two served models and the mean of their
probabilities, scored on held-out texts as the recipe choice holds them out (a fifth of the texts, by
``choice_fold``; the prior and every head train without them) and on the data set's test rows.

    python research/head_blend.py --data ../shared/data/hs_brexit --last-epoch 4

The held-out figures are what a blend candidate would be chosen on; the test figures are looked at, not chosen on.
Users: at most ``recipe_choice.CHOICE_USERS`` qualifying users, the choice's own sample.

Status: not adopted (reports/findings.md, round 17): on HS-Brexit, ConvAbuse and the traders the blend scored between
its two parts on the held-out texts, never clearly above the better one, so it was not built as a candidate.
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
from localize.evaluation.harness import user_metrics
from localize.recipe_candidates import candidate_named
from localize.recipe_choice import HOLDOUT_FRACTION, choice_fold
from localize.training import Trainer
from localize.training_args import TrainingArguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a data set folder (train and test label files)")
    parser.add_argument("--last-epoch", type=int, default=None, help="the prior's last epoch (as the choice stops it)")
    parser.add_argument("--max-users", type=int, default=200, help="users scored, at most (the first by name)")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    data, base, cache = load_eval_data(options.data), get_base_model(), ActivationCache(max_bytes=4 << 30)
    held = {r.text for r in data.train if choice_fold(r.text, round(1 / HOLDOUT_FRACTION)) == 0}
    rows = [r for r in data.train if r.text not in held]
    started = time.time()
    prior_args = TrainingArguments(seed=options.seed, prior_last_epoch=options.last_epoch).for_prior()
    prior = Trainer(base, prior_args, [r.text for r in rows], [r.label for r in rows], data.labels, cache=cache,
                    annotators=[r.user for r in rows]).train()
    print(f"prior on {len(rows):,} rows: {time.time() - started:.0f} s", flush=True)
    recipes = {name: candidate_named(name).args for name in ("prior-head", "prior-mlp-averaged")}
    users = [u for u in data.users if len(data.rows(u, "train")) >= 80 and len(data.rows(u, "test")) >= 15]
    users = sorted(users)[: options.max_users]
    scores: dict[str, dict[str, list[tuple[float, float]]]] = {"held-out": {}, "test": {}}
    started = time.time()
    for user in users:
        own = [r for r in data.rows(user, "train") if r.text not in held]
        parts = {"held-out": [r for r in data.rows(user, "train") if r.text in held], "test": data.rows(user, "test")}
        probabilities: dict[str, dict[str, torch.Tensor]] = {part: {} for part in parts}
        for name, args in recipes.items():
            trainer = Trainer(base, args, [r.text for r in own], [r.label for r in own], data.labels, init=prior,
                              cache=cache)
            trainer.train()
            for part, part_rows in parts.items():
                if part_rows:
                    probabilities[part][name] = trainer.predict_proba([r.text for r in part_rows])
        for part, part_rows in parts.items():
            if len(part_rows) < 5:
                continue
            truth = np.array([data.labels.index(r.label) for r in part_rows])
            served = dict(probabilities[part])
            served["blend (mean of both)"] = torch.stack(list(probabilities[part].values())).mean(0)
            for name, p in served.items():
                scores[part].setdefault(name, []).append(user_metrics(truth, p.argmax(1).numpy()))
    print(f"{len(users)} users' heads: {time.time() - started:.0f} s", flush=True)
    for part, by_recipe in scores.items():
        baseline = np.array(by_recipe["prior-head"])
        for name, values in by_recipe.items():
            values = np.array(values)
            diff = values - baseline
            se = diff.std(0, ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else np.zeros(2)
            print(f"{part:9s} {name:22s} {len(values):4d} users  accuracy {values[:, 0].mean():.3f}  macro-F1 "
                  f"{values[:, 1].mean():.3f}  against prior-head {diff[:, 0].mean():+.3f} ({se[0]:.3f}) / "
                  f"{diff[:, 1].mean():+.3f} ({se[1]:.3f})")


if __name__ == "__main__":
    main()
