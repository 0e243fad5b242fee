"""A task's decision rule: logit offsets by label, fitted on held-out rows of every user of the task, kept only
where they help users they were not fitted on.

A user's label is the most probable one. Whether a task's users are better served by leaning further toward some
label (or away from it) than their heads' class weights already do is measured on the recipe choice's held-out
rows, by the choice's own score: the mean over users of (accuracy + macro-F1) / 2. The best of many offsets always
gains on the rows it was picked on, so the gain is measured out of fold, across users.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OFFSET_GRID = np.round(np.arange(-2.0, 2.0001, 0.05), 2)  # on the logit scale, per label
SWEEPS = 2  # coordinate passes over the labels (two labels need one)
USER_FOLDS = 5  # the gain is measured on users the offsets were not fitted on
MIN_T = 2.0  # kept when that gain's mean is this many standard errors above 0


@dataclass(frozen=True)
class DecisionRule:
    offsets: dict[str, float]  # by label name; empty: the most probable label
    gain: float  # mean per-user gain in score, each user's from offsets fitted on other users
    gain_t: float | None  # that mean over its standard error (None when every user gained the same)


def fit_decision_rule(users: Sequence[tuple[np.ndarray, np.ndarray]], label_set: Sequence[str]) -> DecisionRule | None:
    """``users``: per user, held-out label indexes ``[rows]`` and served logits ``[rows, labels]``. The users are
    split into ``USER_FOLDS`` folds; offsets fitted on the other folds' users score each fold's; the offsets fitted
    on every user are kept only when those out-of-fold gains are beyond chance. ``None`` with fewer than two users
    or labels."""
    if len(users) < 2 or len(label_set) < 2:
        return None
    rows = _PooledRows(users=np.concatenate([np.full(len(targets), i) for i, (targets, _) in enumerate(users)]),
                       targets=np.concatenate([np.asarray(targets, dtype=np.int64) for targets, _ in users]),
                       logits=np.concatenate([np.asarray(logits, dtype=np.float64) for _, logits in users]),
                       count=len(users))
    plain = rows.scores(np.zeros(len(label_set)))
    folds = min(USER_FOLDS, len(users))
    fold_of = np.arange(len(users)) % folds
    gains = np.zeros(len(users))
    for fold in range(folds):
        offsets = _search_offsets(rows, fold_of != fold)
        gains[fold_of == fold] = (rows.scores(offsets) - plain)[fold_of == fold]
    mean, spread = float(gains.mean()), float(gains.std(ddof=1) / np.sqrt(len(gains)))
    kept: dict[str, float] = {}
    if mean > 0 and (spread == 0 or mean / spread >= MIN_T):
        best = _search_offsets(rows, np.ones(len(users), dtype=bool))
        kept = {label_set[k]: round(float(v), 2) for k, v in enumerate(best) if v != 0}
    return DecisionRule(kept, round(mean, 4), round(mean / spread, 2) if spread > 0 else None)


@dataclass
class _PooledRows:
    """Every user's held-out rows in one array: whose row it is, its label index, its served logits."""
    users: np.ndarray
    targets: np.ndarray
    logits: np.ndarray
    count: int

    def scores(self, offsets: np.ndarray) -> np.ndarray:
        """Each user's (accuracy + macro-F1) / 2 with ``offsets`` added to the logits, macro-F1 over the labels in
        the user's truth or predictions as ``localize eval`` scores it (one confusion matrix per user, all at once)."""
        labels = self.logits.shape[1]
        predicted = (self.logits + offsets).argmax(1)
        confusion = np.bincount((self.users * labels + self.targets) * labels + predicted,
                                minlength=self.count * labels * labels).reshape(self.count, labels, labels)
        right = np.diagonal(confusion, axis1=1, axis2=2)
        seen = confusion.sum(2) + confusion.sum(1)  # per label: given plus predicted
        f1 = np.divide(2 * right, seen, out=np.zeros(right.shape), where=seen > 0)
        macro = f1.sum(1) / np.maximum((seen > 0).sum(1), 1)
        return (right.sum(1) / np.maximum(confusion.sum((1, 2)), 1) + macro) / 2


def _search_offsets(rows: _PooledRows, members: np.ndarray) -> np.ndarray:
    """Coordinate search over ``OFFSET_GRID`` for the offsets with the best mean score of ``members`` (a mask over
    users); the first label's stays 0, and on a tie the smaller offset stays (no evidence, no change)."""
    labels = rows.logits.shape[1]
    best = np.zeros(labels)
    best_mean = float(rows.scores(best)[members].mean())
    for _ in range(SWEEPS if labels > 2 else 1):
        for label in range(1, labels):
            for value in OFFSET_GRID:
                trial = best.copy()
                trial[label] = value
                mean = float(rows.scores(trial)[members].mean())
                if mean > best_mean + 1e-12 or (mean >= best_mean - 1e-12 and abs(value) < abs(best[label])):
                    best, best_mean = trial, max(mean, best_mean)
    return best


__all__ = ["DecisionRule", "MIN_T", "fit_decision_rule"]
