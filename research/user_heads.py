"""Shared by research scripts that fit users' heads by hand on a prior's encodings (not a script itself).

``python research/NAME.py`` puts this folder on the import path, so a script imports it as ``user_heads``."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from localize.map_head import class_weights_for, solve_map_head
from localize.training_args import TrainingArguments


def fit_user_map_head(encoded: dict[str, torch.Tensor], rows: list, labels: list[str], center: dict[str, torch.Tensor],
                      args: TrainingArguments) -> tuple[torch.Tensor, torch.Tensor]:
    """A user's MAP head on ``rows`` (each with ``text`` and ``label``) as the product fits it (``args``' strength and
    class weighting, no calibration): ``(weight, bias)``."""
    x = torch.stack([encoded[r.text] for r in rows])
    y = torch.tensor([labels.index(r.label) for r in rows])
    counts = np.bincount(y.numpy(), minlength=len(labels)).astype(float)
    weights = class_weights_for(counts, args.class_weighting)
    return solve_map_head(x, y, center, strength=args.head_prior_strength,
                          class_weights=None if weights is None else torch.tensor(weights, dtype=torch.float32))


def argument_changes(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs from a script's ``--set`` options as training-argument changes (each value JSON where it
    parses, else the bare string)."""
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value
    return changes


def score_table(truth: dict[str, list[int]], predicted: dict[tuple[str, str], list[int]], names: list[str],
                num_labels: int, heading: str = "") -> dict[str, np.ndarray]:
    """Per name, every scored user's (accuracy, macro-F1) over their held-out rows as the recipe choice counts
    them (``[users, 2]``), each name's means printed."""
    from localize.recipe_choice import _user_scores

    users = [u for u in truth if truth[u]]
    table = {}
    for name in names:
        table[name] = np.array([_user_scores(truth[u], predicted[(u, name)], num_labels) for u in users])
        print(f"{heading}{name}: accuracy {table[name][:, 0].mean():.4f}, macro-F1 {table[name][:, 1].mean():.4f}, "
              f"score {table[name].mean():.4f}", flush=True)
    return table


def print_paired_difference(what: str, scores: np.ndarray, reference: np.ndarray) -> None:
    """The mean per-user difference in the choice's score (the mean of accuracy and macro-F1) and its standard
    error."""
    difference = scores.mean(1) - reference.mean(1)
    print(f"{what}, per user ({len(difference)} users): {difference.mean():+.4f} "
          f"(standard error {difference.std(ddof=1) / len(difference) ** 0.5:.4f})", flush=True)
