"""Task priors from several seeds, their users' heads' probabilities averaged, judged on the recipe choice's
held-out rows (train rows only). For each of the choice's three folds by text and each seed, the production prior is
trained on the fold's training texts (stopping on its own validation loss, as the choice trains it), every user's
MAP head is fitted on their rows of those texts (the product's defaults, without calibration) and scores their
held-out rows; an ensemble answers with the mean of the seeds' probabilities. Printed: each seed alone and the
ensemble, as the choice scores (accuracy, macro-F1 per user, averaged), with the paired difference per user.

    python research/prior_seed_ensemble.py --data ../shared/data/hs_brexit --seeds 3

Status: a diagnosis for the lead of reports/findings.md, round 18 (three priors averaged on the demo); nothing
adopted.
"""
from __future__ import annotations

import argparse
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
    parser.add_argument("--seeds", type=int, default=3)
    options = parser.parse_args()
    data, base = load_eval_data(options.data), get_base_model()
    rows, labels = data.train, data.labels
    texts = sorted({r.text for r in rows})
    users = sorted({r.user for r in rows})
    defaults = TrainingArguments()
    # per (user, seed or "ensemble"): targets and predictions over the folds
    truth: dict[str, list[int]] = {u: [] for u in users}
    predicted: dict[tuple[str, str], list[int]] = {}
    for fold in range(FOLDS):
        held = {t for t in texts if choice_fold(t, FOLDS) == fold}
        train_rows = [r for r in rows if r.text not in held]
        probabilities: dict[str, list[torch.Tensor]] = {u: [] for u in users}
        for seed in range(options.seeds):
            cache = ActivationCache(max_bytes=4 << 30)
            trainer = Trainer(base, TrainingArguments(seed=seed).for_prior(), [r.text for r in train_rows],
                              [r.label for r in train_rows], labels, cache=cache,
                              annotators=[r.user for r in train_rows])
            prior = trainer.train()
            encoded = dict(zip(texts, cache.encoded(base, prior, texts, batch_size=128)))
            center = {k: v.detach() for k, v in trainer.head.items()}
            for user in users:
                own = [r for r in train_rows if r.user == user]
                scored = [r for r in rows if r.user == user and r.text in held]
                if len(own) < defaults.min_labels or not scored:
                    continue
                weight, bias = fit_user_map_head(encoded, own, labels, center, defaults)
                logits = torch.stack([encoded[r.text] for r in scored]) @ weight.T + bias
                probabilities[user].append(torch.softmax(logits.detach(), -1))
                predicted.setdefault((user, f"seed {seed}"), []).extend(logits.argmax(1).tolist())
                if seed == 0:
                    truth[user].extend(labels.index(r.label) for r in scored)
            print(f"fold {fold + 1}, seed {seed}: prior kept epoch {trainer.metrics.get('best_epoch')}", flush=True)
        for user, parts in probabilities.items():
            if parts:
                predicted.setdefault((user, "ensemble"), []).extend(torch.stack(parts).mean(0).argmax(1).tolist())
    scored_users = [u for u in users if truth[u]]
    table = {}
    for name in [f"seed {s}" for s in range(options.seeds)] + ["ensemble"]:
        per_user = np.array([_user_scores(truth[u], predicted[(u, name)], len(labels)) for u in scored_users])
        table[name] = per_user
        print(f"{name}: accuracy {per_user[:, 0].mean():.4f}, macro-F1 {per_user[:, 1].mean():.4f}, "
              f"score {per_user.mean():.4f}", flush=True)
    singles = np.mean([table[f"seed {s}"] for s in range(options.seeds)], axis=0)
    difference = table["ensemble"].mean(1) - singles.mean(1)  # per user: ensemble's score minus a seed's mean
    print(f"ensemble minus the seeds' mean, per user ({len(scored_users)} users): {difference.mean():+.4f} "
          f"(standard error {difference.std(ddof=1) / len(difference) ** 0.5:.4f})", flush=True)


if __name__ == "__main__":
    main()
