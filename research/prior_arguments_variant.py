"""A task prior trained with other arguments (``--set prior_class_weighting=balanced``) against the default
recipe's, judged as the recipe choice judges: for each of the choice's folds by text and each seed, both priors are
trained on the fold's training texts (stopping as the product stops them), every user's MAP head (the product's
defaults, without calibration) is fitted on each prior's encoding of their rows and scores their held-out rows.
Printed: each prior's score (the mean of users' accuracy and macro-F1) per seed, and the variant's paired
difference per user.

    python research/prior_arguments_variant.py --data ../shared/data/hs_brexit --set prior_class_weighting=balanced

Status: current, a tool for comparing a prior's arguments (reports/findings.md, round 23: balanced class weights
gained nothing).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.recipe_choice import held_out_splits
from localize.training import Trainer
from localize.training_args import TrainingArguments
from user_heads import argument_changes, fit_user_map_head, print_paired_difference, score_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", dest="changes", action="append", default=[], metavar="KEY=VALUE",
                        help="a training argument of the variant's prior (a JSON value, or a bare string)")
    options = parser.parse_args()
    changes = argument_changes(options.changes)
    data, base = load_eval_data(options.data), get_base_model()
    rows, labels = data.train, data.labels
    texts = sorted({r.text for r in rows})
    users = sorted({r.user for r in rows})
    for seed in options.seeds:
        default = TrainingArguments(seed=seed)
        variants = {"default": default, "variant": dataclasses.replace(default, **changes)}
        truth: dict[str, list[int]] = {u: [] for u in users}
        predicted: dict[tuple[str, str], list[int]] = {}
        for held in held_out_splits(texts):
            train_rows = [r for r in rows if r.text not in held]
            for name, args in variants.items():
                trainer = Trainer(base, args.for_prior(), [r.text for r in train_rows], [r.label for r in train_rows],
                                  labels, cache=ActivationCache(max_bytes=4 << 30),
                                  annotators=[r.user for r in train_rows])
                prior = trainer.train()
                encoded = dict(zip(texts, ActivationCache(max_bytes=4 << 30).encoded(base, prior, texts,
                                                                                     batch_size=128)))
                center = {k: v.detach().clone() for k, v in prior.head.items()}
                for user in users:
                    own = [r for r in train_rows if r.user == user]
                    scored = [r for r in rows if r.user == user and r.text in held]
                    if len(own) < default.min_labels or not scored:
                        continue
                    if name == "default":
                        truth[user].extend(labels.index(r.label) for r in scored)
                    weight, bias = fit_user_map_head(encoded, own, labels, center, default)
                    logits = torch.stack([encoded[r.text] for r in scored]) @ weight.T + bias
                    predicted.setdefault((user, name), []).extend(logits.argmax(1).tolist())
        table = score_table(truth, predicted, list(variants), len(labels), heading=f"seed {seed}, ")
        print_paired_difference(f"seed {seed}, variant {changes} minus default", table["variant"], table["default"])

if __name__ == "__main__":
    main()
