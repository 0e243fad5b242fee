"""How far a recipe's probabilities can be trusted: expected calibration error, and abstaining below a
confidence threshold (coverage against accuracy), with a per-user threshold picked on the user's own
validation rows."""
from __future__ import annotations

import numpy as np



def reliability(probabilities: np.ndarray, truth: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """Per confidence bin: (mean confidence, accuracy, rows), for the bins that hold rows."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [(float(confidence[which == b].mean()), float(correct[which == b].mean()), int((which == b).sum()))
            for b in range(bins) if (which == b).any()]


def coverage_accuracy(
    per_user: dict[str, tuple[np.ndarray, np.ndarray]], thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold: the mean per-user coverage (share of rows answered: confidence >= threshold) and the
    mean per-user accuracy on answered rows (users who answer nothing at a threshold are left out of its mean)."""
    coverage, accuracy = [], []
    for threshold in thresholds:
        covers, accs = [], []
        for probabilities, truth in per_user.values():
            answered = probabilities.max(1) >= threshold
            covers.append(answered.mean())
            if answered.any():
                accs.append((probabilities[answered].argmax(1) == truth[answered]).mean())
        coverage.append(float(np.mean(covers)))
        accuracy.append(float(np.mean(accs)) if accs else float("nan"))
    return np.array(coverage), np.array(accuracy)


def pick_threshold(probabilities: np.ndarray, truth: np.ndarray, target_accuracy: float) -> float:
    """The lowest confidence threshold at which the answered rows reach ``target_accuracy`` (on validation rows);
    1.0 (answer only certainties) where no threshold reaches it."""
    confidence = probabilities.max(1)
    correct = probabilities.argmax(1) == truth
    for threshold in np.unique(confidence):  # ascending: the first that reaches the target covers the most
        answered = confidence >= threshold
        if correct[answered].mean() >= target_accuracy:
            return float(threshold)
    return 1.0


def per_user_abstention(
    validation: dict[str, tuple[np.ndarray, np.ndarray]],
    test: dict[str, tuple[np.ndarray, np.ndarray]],
    target_accuracy: float,
) -> dict[str, float]:
    """Each user's threshold is picked on that user's validation rows; returns the mean test coverage and the mean
    test accuracy on answered rows over users who answer anything."""
    covers, accs = [], []
    for user, (probabilities, truth) in test.items():
        if user not in validation:
            continue
        threshold = pick_threshold(*validation[user], target_accuracy)
        answered = probabilities.max(1) >= threshold
        covers.append(answered.mean())
        if answered.any():
            accs.append((probabilities[answered].argmax(1) == truth[answered]).mean())
    return {"target_accuracy": target_accuracy, "users": len(covers),
            "mean_coverage": float(np.mean(covers)) if covers else float("nan"),
            "mean_accuracy_answered": float(np.mean(accs)) if accs else float("nan")}
