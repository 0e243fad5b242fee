"""Several MLP heads on one user's rows, served as one (``head_ensemble``).

An MLP head trained by AdamW epochs and stopped early moves with its seed (its MLP's starting weights, dropout, the
order of its batches): on the demo's finance sentences one trader's accuracy moved by several points from seed to
seed. Training K heads from seeds ``seed``, ``seed + 1``, ... on the same rows and averaging their logits removes
much of that luck, and costs nothing at serving: K residual MLP heads whose logits are averaged are one residual MLP
head K times as wide (:func:`merge_mlp_heads`), so the engine serves it like any other. They train together, in one
epoch loop (:mod:`localize.ensemble_loop`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from localize.adapters import make_method
from localize.adapters.head import DOWN, UP, UP_BIAS
from localize.trainable_adapter import TrainableAdapter
from localize.training_args import TrainingArguments

# A merge is exact when the averaged head maps the lifted residuals back exactly (it has full row rank).
_MERGE_TOLERANCE = 1e-4

Head = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]  # (the MLP's params, the linear head)


def merge_mlp_heads(members: Sequence[Head]) -> Head:
    """One residual MLP head whose logits are the mean of the ``members``' logits.

    A member's logits are ``W_k (x + D_k g(U_k x + c_k)) + b_k``. With ``W`` the members' mean head and ``L`` its
    pseudo-inverse (``W L = I`` when ``W`` has full row rank), the merged head is ``W`` and ``mean b_k``, its MLP
    the members' stacked ``U_k`` and ``c_k``, and its down-projection the blocks ``L W_k D_k / K``: then
    ``W (x + sum_k L W_k D_k g_k / K) + mean b_k = mean_k W_k x + mean_k W_k D_k g_k + mean b_k``, the mean."""
    if not members:
        raise ValueError("merging MLP heads needs at least one head")
    count = len(members)
    weight = torch.stack([head["weight"] for _, head in members]).mean(0)
    bias = torch.stack([head["bias"] for _, head in members]).mean(0)
    lift = torch.linalg.pinv(weight)  # [hidden, labels]
    error = (weight @ lift - torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device)).abs().max()
    if error > _MERGE_TOLERANCE:
        raise ValueError(f"the heads' mean has rank below its {weight.shape[0]} labels (error {float(error):.2g}); "
                         "their mean cannot be served as one head")
    params = {
        UP: torch.cat([mlp[UP] for mlp, _ in members]),
        UP_BIAS: torch.cat([mlp[UP_BIAS] for mlp, _ in members]),
        DOWN: torch.cat([lift @ (head["weight"] @ mlp[DOWN]) / count for mlp, head in members], dim=1),
    }
    return params, {"weight": weight, "bias": bias}


def merge_heads_on_blocks(members: Sequence[Head], block_width: int) -> Head:
    """One head on the concatenation of ``len(members)`` encodings (``block_width`` each) whose logits are the mean of
    the ``members``' logits, member ``k`` reading block ``k`` (a user's heads on several task priors side by side).
    Linear members give their weights side by side over ``K`` and their mean bias; MLP members are padded with zeros
    to read and write only their own block, which leaves each one's logits unchanged, and then merged as one."""
    count = len(members)
    if not count:
        raise ValueError("merging heads needs at least one head")

    def padded(tensor: torch.Tensor, index: int, dim: int) -> torch.Tensor:
        shape = list(tensor.shape)
        shape[dim] = block_width * count
        wide = tensor.new_zeros(shape)
        wide.narrow(dim, index * block_width, block_width).copy_(tensor)
        return wide

    if all(not mlp for mlp, _ in members):
        return {}, {"weight": torch.cat([head["weight"] for _, head in members], dim=1) / count,
                    "bias": torch.stack([head["bias"] for _, head in members]).mean(0)}
    if not all(mlp for mlp, _ in members):
        raise ValueError("heads on blocks must all be linear or all have an MLP")
    wide = [({UP: padded(mlp[UP], k, 1), UP_BIAS: mlp[UP_BIAS], DOWN: padded(mlp[DOWN], k, 0)},
             {"weight": padded(head["weight"], k, 1), "bias": head["bias"]}) for k, (mlp, head) in enumerate(members)]
    return merge_mlp_heads(wide)


def member_arguments(args: TrainingArguments, index: int) -> TrainingArguments:
    """The ``index``-th member's arguments (from 0): the same, from seed ``args.seed + index``."""
    return dataclasses.replace(args, seed=args.seed + index, head_ensemble=1)


def serve_as_one(target: TrainableAdapter, members: Sequence[TrainableAdapter]) -> None:
    """Gives ``target`` (the adapter a trainer hands back) the merge of the trained ``members``' MLPs and heads, and
    a method as wide."""
    params, head = merge_mlp_heads([(member.params, member.head) for member in members])
    target.params, target.head = params, head
    target.method = make_method("head", {"hidden": params[UP].shape[0]}, target.base.dims)


__all__ = ["member_arguments", "merge_heads_on_blocks", "merge_mlp_heads", "serve_as_one"]
