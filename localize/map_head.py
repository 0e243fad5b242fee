"""A linear head fitted by maximum a posteriori (the default recipe's per-user fit), and the per-label loss weights
every fit takes from the label counts."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from localize.adapters.base import apply_head
from localize.training_rows import Split, loss_targets


def solve_map_head(
    inputs: torch.Tensor, targets: torch.Tensor, center: dict[str, torch.Tensor], *, strength: float,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A linear head's maximum a posteriori fit on ``inputs [rows, hidden]``: the labels' (class-weighted)
    cross-entropy plus ``strength`` times the squared distance of the weights from ``center`` (the prior's head), solved
    to convergence by L-BFGS. No epochs, no learning rate, no validation noise: the more labels a user has, the
    further their head moves from the task's. Returns ``(weight [labels, hidden], bias [labels])``."""
    weight = center["weight"].detach().clone().requires_grad_(True)
    bias = center["bias"].detach().clone().requires_grad_(True)
    rows = len(inputs)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=500, tolerance_grad=1e-7,
                                  tolerance_change=1e-10, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        data = F.cross_entropy(apply_head(inputs, weight, bias), targets, weight=class_weights, reduction="sum")
        loss = (data + strength * (weight - center["weight"]).pow(2).sum()) / rows
        loss.backward()
        return loss

    optimizer.step(objective)
    return weight.detach(), bias.detach()


def fit_map_head(head: dict[str, torch.Tensor], split: Split, center: dict[str, torch.Tensor], *, strength: float,
                 class_weights: torch.Tensor | None, device: torch.device) -> None:
    """Sets ``head`` to its maximum a posteriori fit (:func:`solve_map_head`) on the split's pooled vectors."""
    weight, bias = solve_map_head(torch.stack(split.inputs).to(device).float(),
                                  loss_targets(split, slice(None)).to(device), center,
                                  strength=strength, class_weights=class_weights)
    with torch.no_grad():
        head["weight"].copy_(weight)
        head["bias"].copy_(bias)


def class_weights_of(split: Split, num_labels: int, weighting: str, device: torch.device) -> torch.Tensor | None:
    """:func:`class_weights_for` the split's label counts (its label shares, where texts were merged)."""
    if weighting == "none":
        return None
    if split.soft is not None:
        counts = split.soft.sum(0).double().numpy()
    else:
        counts = np.bincount(split.targets.numpy(), minlength=num_labels).astype(float)
    weights = class_weights_for(counts, weighting)
    return torch.tensor(weights, dtype=torch.float32, device=device)


def class_weights_for(counts: np.ndarray, weighting: str) -> np.ndarray | None:
    """Per-label loss weights from label counts: ``none``, ``sqrt`` (inverse square root of the frequency) or
    ``balanced`` (inverse frequency); absent labels weigh 0."""
    if weighting == "none":
        return None
    present = counts > 0
    weights = np.zeros_like(counts, dtype=float)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return np.sqrt(weights) if weighting == "sqrt" else weights
