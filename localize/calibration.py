"""Served confidence: probabilities calibrated on a version's own validation rows, and abstention below a threshold
that reaches a target accuracy there.

Training fits one temperature per version on its validation logits (temperature scaling: the labels' order, and so
accuracy, never changes) and folds it into the head, so serving pays nothing for it; with it, a uniform share
that the engine spreads evenly over the labels after the softmax (annotators' own inconsistency). It also keeps a
compact record of what the calibrated model said on those rows (each row's confidence and whether it was right), from
which the threshold for any target accuracy is read at serving time: a task sets its target, a request may override
it.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy and torch are imported where a record is made or read, not by database-only commands
    import numpy as np
    import torch

# A temperature is fitted on a user's validation rows, often 20-60 of them: bounded, and pulled toward 1 (no change)
# in proportion to how few rows there are, so a user whose few rows were all right is not made near-certain.
TEMPERATURE_RANGE = (0.25, 16.0)
_GRID = 321
# People do not always give the same text the same label: a share of each answer's probability is spread evenly over
# the labels (at most half, pulled toward none), so a model that is sure of its reading is not surer than its
# annotator. A temperature alone cannot say this: fitted to noisy rows it flattens the right answers too.
UNIFORM_SHARE_RANGE = (0.0, 0.5)
_SHARES = 26
MAX_RECORD_ROWS = 300
_SHARE_SCALE = 0.1  # the pull toward no share: a Gaussian penalty of this width, per validation set


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The temperature of :func:`fit_calibration` with no uniform share."""
    return fit_calibration(logits, targets, shares=False)[0]


def fit_calibration(logits: torch.Tensor, targets: torch.Tensor, *, shares: bool = True) -> tuple[float, float]:
    """``(T, s)`` minimising the validation rows' negative log-likelihood of ``(1 - s) softmax(logits / T) + s / K``
    (``logits [rows, K]``, ``targets [rows]`` label indexes or ``[rows, K]`` label shares), plus ``(log T)^2 / 2``
    and ``(s / 0.1)^2 / 2`` penalties per validation set, over a grid of ``TEMPERATURE_RANGE`` (log-spaced) and
    ``UNIFORM_SHARE_RANGE``. ``shares=False`` fits the temperature alone."""
    import torch

    rows, labels = logits.shape
    if rows == 0:
        return 1.0, 0.0
    logits = logits.detach().double().cpu()
    targets = targets.detach().double().cpu() if targets.dim() == 2 else \
        torch.nn.functional.one_hot(targets.detach().long().cpu(), labels).double()
    log_t = torch.linspace(math.log(TEMPERATURE_RANGE[0]), math.log(TEMPERATURE_RANGE[1]), _GRID, dtype=torch.float64)
    probabilities = torch.softmax(logits.unsqueeze(0) / log_t.exp().view(-1, 1, 1), dim=-1)  # [grid, rows, labels]
    best = (math.inf, 1.0, 0.0)
    for share in torch.linspace(*UNIFORM_SHARE_RANGE, _SHARES, dtype=torch.float64).tolist() if shares else [0.0]:
        spread = probabilities * (1 - share) + share / labels
        nll = -(spread.clamp_min(1e-300).log() * targets.unsqueeze(0)).sum(-1).mean(-1)  # [grid]
        objective = nll + (log_t.pow(2) + (share / _SHARE_SCALE) ** 2) / (2 * rows)
        index = int(objective.argmin())
        if float(objective[index]) < best[0]:
            best = (float(objective[index]), float(log_t[index].exp()), share)
    return best[1], best[2]


def calibrate_on_validation(logits: torch.Tensor, targets: torch.Tensor, *, fit: bool, temperature_scale: float,
                            added_share: float, offsets: torch.Tensor | None) -> tuple[float, float, torch.Tensor]:
    """A version's ``(temperature, uniform share, probabilities)`` on its validation rows: the pair fitted on their
    ``logits`` (with ``fit``; else none) and corrected task-wide, and the probabilities served there, a decision
    rule's ``offsets`` added to the calibrated logits."""
    import torch

    temperature, share = 1.0, 0.0
    if fit:
        temperature, share = fit_calibration(logits, targets)
        # The task's correction, measured where neither this version's epoch nor its pair was chosen.
        temperature *= temperature_scale
        share = combined_share(share, added_share)
    served = logits / temperature
    if offsets is not None:
        served = served + offsets.to(served)
    return temperature, share, spread_evenly(torch.softmax(served, dim=-1), share).cpu()


def fit_calibration_correction(logits: list[np.ndarray], shares: list[float],
                               targets: list[np.ndarray]) -> tuple[float, float]:
    """``(c, a)``: the factor on every version's temperature and the uniform share added to every version's own
    (``combined_share``), fitted by likelihood on rows none of the versions trained, stopped or calibrated on. One
    ``[rows, K]`` array of served logits (temperature already applied), its uniform share and its ``[rows]`` label
    indexes per version, pooled. Pulled toward no correction as a version's own pair is; ``(1, 0)`` without rows."""
    import numpy as np

    rows = sum(len(t) for t in targets)
    if rows == 0:
        return 1.0, 0.0
    log_c = np.linspace(math.log(0.25), math.log(4.0), 161)
    added = np.linspace(*UNIFORM_SHARE_RANGE, _SHARES)
    nll = np.zeros((len(added), len(log_c)))
    for z, share, y in zip(logits, shares, targets):
        z = np.asarray(z, dtype=np.float64)[None] / np.exp(log_c)[:, None, None]  # [grid, rows, K]
        z = np.exp(z - z.max(-1, keepdims=True))
        picked = np.take_along_axis(z / z.sum(-1, keepdims=True), np.asarray(y)[None, :, None], -1)[..., 0]
        for index, extra in enumerate(added):
            total = combined_share(share, float(extra))
            nll[index] -= np.log(np.clip(picked * (1 - total) + total / z.shape[-1], 1e-300, None)).sum(-1)
    objective = nll / rows + (log_c[None] ** 2 + (added[:, None] / _SHARE_SCALE) ** 2) / (2 * rows)
    share_index, scale_index = np.unravel_index(int(objective.argmin()), objective.shape)
    return float(np.exp(log_c[scale_index])), float(added[share_index])


def combined_share(own: float, added: float) -> float:
    """A version's uniform share after a task-wide ``added`` share is spread over what its own share left."""
    return 1 - (1 - own) * (1 - added)


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray, bins: int = 15) -> float:
    """ECE of the top label: the row-weighted mean gap between confidence and accuracy over equal-width bins."""
    import numpy as np

    if len(truth) == 0:
        return float("nan")
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            gap += members.sum() * abs(confidence[members].mean() - correct[members].mean())
    return float(gap / len(truth))


def spread_evenly(probabilities: torch.Tensor, share: float) -> torch.Tensor:
    """``(1 - share) * probabilities + share / labels`` over the last dimension: the served form of a fitted
    uniform share (the top label never changes)."""
    if not share:
        return probabilities
    return probabilities * (1 - share) + share / probabilities.shape[-1]


def calibration_record(probabilities: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """What a model said on its validation rows, kept with the version: each row's top-label confidence (ascending)
    and whether that label was right. At most ``MAX_RECORD_ROWS`` rows (an even subsample beyond)."""
    import numpy as np

    probabilities, truth = np.asarray(probabilities, dtype=np.float64), np.asarray(truth)
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == truth
    order = np.argsort(confidence, kind="stable")
    if len(order) > MAX_RECORD_ROWS:
        order = order[np.linspace(0, len(order) - 1, MAX_RECORD_ROWS).round().astype(int)]
    return {"confidence": [round(float(c), 5) for c in confidence[order]],
            "correct": [int(c) for c in correct[order]]}


def threshold_for(record: dict[str, Any] | None, target_accuracy: float) -> float | None:
    """The lowest confidence at which the recorded rows answered at or above it reach ``target_accuracy``; ``None``
    when there is no record (no validation rows: nothing to abstain on), and just above the highest recorded
    confidence when no threshold reaches the target (abstain on everything the rows could judge)."""
    import numpy as np

    if not record or not record.get("confidence"):
        return None
    confidence = np.asarray(record["confidence"], dtype=np.float64)
    correct = np.asarray(record["correct"], dtype=np.float64)
    order = np.argsort(confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    # Accuracy of the rows at or above each row's confidence: suffix sums over the ascending order.
    answered_right = np.cumsum(correct[::-1])[::-1]
    answered = np.arange(len(correct), 0, -1)
    for index in range(len(confidence)):
        if index > 0 and confidence[index] == confidence[index - 1]:
            continue  # ties are answered together
        if answered_right[index] / answered[index] >= target_accuracy:
            return float(confidence[index])
    return float(np.nextafter(confidence[-1], np.inf))


def check_target_accuracy(value: float, *, name: str = "target_accuracy") -> float:
    if not (isinstance(value, (int, float)) and 0.0 < float(value) <= 1.0):
        raise ValueError(f"{name}={value!r} must be a number in (0, 1]")
    return float(value)


__all__ = ["calibration_record", "check_target_accuracy", "expected_calibration_error", "fit_calibration",
           "fit_calibration_correction", "fit_temperature", "combined_share",
           "spread_evenly",
           "threshold_for"]
