"""Task priors from several seeds, their users' heads' probabilities averaged, judged on the recipe choice's
held-out rows (train rows only). For each of the choice's three folds by text and each seed, the production prior is
trained on the fold's training texts (stopping on its own validation loss, as the choice trains it), every user's
MAP head is fitted on their rows of those texts (the product's defaults, without calibration) and scores their
held-out rows; an ensemble answers with the mean of the seeds' probabilities. Printed: each seed alone and the
ensemble, as the choice scores (accuracy, macro-F1 per user, averaged), with the paired difference per user.

    python research/prior_seed_ensemble.py --data ../shared/data/hs_brexit --seeds 3

``--set KEY=VALUE`` changes every seed's prior (``--set 'method_options={"r": 8, "layers": [-2, -1], ...}'``).

Status: a diagnosis for the lead of reports/findings.md, round 18 (three priors averaged on the demo); nothing
adopted.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.recipe_choice import held_out_splits
from localize.training import Trainer
from localize.training_args import TrainingArguments
from prior_seed_soup import souped_prior
from user_heads import argument_changes, fit_user_map_head, print_paired_difference, score_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--set", dest="changes", action="append", default=[], metavar="KEY=VALUE",
                        help="a training argument of every seed's prior (a JSON value, or a bare string)")
    parser.add_argument("--shared-init", action="store_true",
                        help="every seed's prior starts from seed 0's LoRA and head (only order and dropout differ)")
    options = parser.parse_args()
    changes = argument_changes(options.changes)
    data, base = load_eval_data(options.data), get_base_model()
    rows, labels = data.train, data.labels
    texts = sorted({r.text for r in rows})
    users = sorted({r.user for r in rows})
    defaults = TrainingArguments()
    # per (user, seed or "ensemble"): targets and predictions over the folds
    truth: dict[str, list[int]] = {u: [] for u in users}
    predicted: dict[tuple[str, str], list[int]] = {}
    # As the choice splits: a small task in FOLDS folds by text, a large one holds out one fifth of its texts once.
    splits = held_out_splits(texts)
    for fold, held in enumerate(splits):
        train_rows = [r for r in rows if r.text not in held]
        fold_priors = []
        for seed in range(options.seeds):
            cache = ActivationCache(max_bytes=4 << 30)
            prior_args = dataclasses.replace(TrainingArguments(seed=seed), **changes).for_prior()
            started = time.perf_counter()
            trainer = Trainer(base, prior_args, [r.text for r in train_rows],
                              [r.label for r in train_rows], labels, cache=cache,
                              annotators=[r.user for r in train_rows])
            trainer.prepare()
            if options.shared_init:  # every seed starts from seed 0's LoRA and head; order and dropout still differ
                if seed == 0:
                    start = ({k: v.clone() for k, v in trainer.params.items()},
                             {k: v.clone() for k, v in trainer.head.items()})
                else:
                    trainer.adapter.params = {k: v.clone() for k, v in start[0].items()}
                    trainer.adapter.head = {k: v.clone() for k, v in start[1].items()}
            trainer.fit()
            prior = trainer.result()
            fold_priors.append((prior, {k: v.detach() for k, v in trainer.head.items()}))
            print(f"fold {fold + 1}, seed {seed}: prior kept epoch {trainer.metrics.get('best_epoch')}, "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        soup = souped_prior([p for p, _ in fold_priors])
        soup_center = {k: torch.stack([h[k] for _, h in fold_priors]).mean(0) for k in fold_priors[0][1]}
        encodings = {}  # per variant: {text: pooled vector}
        centers = {}
        for name, (prior, center) in [*((f"seed {s}", fp) for s, fp in enumerate(fold_priors)),
                                      ("soup", (soup, soup_center))]:
            cache = ActivationCache(max_bytes=4 << 30)
            encodings[name] = dict(zip(texts, cache.encoded(base, prior, texts, batch_size=128)))
            centers[name] = center
        seeds = [f"seed {s}" for s in range(options.seeds)]
        # One head on the seeds' encodings side by side, pulled toward their heads side by side (each / K), which
        # starts where the mean of their logits is.
        encodings["concat"] = {t: torch.cat([encodings[n][t] for n in seeds]) for t in texts}
        centers["concat"] = {"weight": torch.cat([centers[n]["weight"] for n in seeds], dim=1) / len(seeds),
                             "bias": torch.stack([centers[n]["bias"] for n in seeds]).mean(0)}
        for user in users:
            own = [r for r in train_rows if r.user == user]
            scored = [r for r in rows if r.user == user and r.text in held]
            if len(own) < defaults.min_labels or not scored:
                continue
            truth[user].extend(labels.index(r.label) for r in scored)
            logits = {}
            for name, encoded in encodings.items():
                weight, bias = fit_user_map_head(encoded, own, labels, centers[name], defaults)
                logits[name] = (torch.stack([encoded[r.text] for r in scored]) @ weight.T + bias).detach()
                predicted.setdefault((user, name), []).extend(logits[name].argmax(1).tolist())
            mean_probability = torch.stack([torch.softmax(logits[n], -1) for n in seeds]).mean(0)
            predicted.setdefault((user, "ensemble"), []).extend(mean_probability.argmax(1).tolist())
            mean_logits = torch.stack([logits[n] for n in seeds]).mean(0)
            predicted.setdefault((user, "ensemble of logits"), []).extend(mean_logits.argmax(1).tolist())
    variants = ["ensemble", "ensemble of logits", "concat", "soup"]
    table = score_table(truth, predicted, [f"seed {s}" for s in range(options.seeds)] + variants, len(labels))
    singles = np.mean([table[f"seed {s}"] for s in range(options.seeds)], axis=0)  # per user: a seed's mean
    for name in variants:
        print_paired_difference(f"{name} minus the seeds' mean", table[name], singles)

if __name__ == "__main__":
    main()
