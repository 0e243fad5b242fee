"""Shared by research scripts that fit users' heads by hand on a prior's encodings (not a script itself).

``python research/NAME.py`` puts this folder on the import path, so a script imports it as ``user_heads``."""
from __future__ import annotations

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
