"""Several MLP heads trained in one epoch loop (``head_ensemble``): their parameters stacked, each step one batched
forward and backward for all of them.

Each head still trains exactly as it would alone (:class:`~localize.epoch_loop.EpochLoop` with its own seed): its
own batch order (``random.Random(seed)``), its own dropout masks (drawn from a generator seeded like the one a lone
head draws from, in the same order and shapes), its own early stopping and best epoch, and in the refit its own
epoch count, both streams continuing. AdamW is elementwise and the heads share no parameter, so one optimizer over
the stacked tensors moves each head as its own would. Only floating-point rounding can differ (a batched matrix
product sums in another order). What it saves is the per-step overhead, which on a few hundred pooled vectors is
most of a head's training time: five heads cost about what one did (``python -m localize.bench.head_ensemble``).
"""
from __future__ import annotations

import random
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from localize.adapters.head import DOWN, UP, UP_BIAS
from localize.epoch_loop import (
    Batches,
    ProgressCallback,
    accelerator_for,
    learning_rate,
    learning_rate_schedule,
    step_precision,
    stopping_score,
    time_left,
)
from localize.trainable_adapter import TrainableAdapter
from localize.training_args import TrainingArguments
from localize.training_rows import Split

Metrics = Callable[[list[int], list[int], int], dict[str, float]]
_NAMES = (UP, UP_BIAS, DOWN, "weight", "bias")  # a lone head's trainable tensors, in its optimizer's order


class HeadEnsembleLoop:
    """:meth:`train` runs every member's epochs in lockstep until each has stopped early (or the cap) and leaves each
    member with its best epoch's parameters; :meth:`refit` trains them again from their start, each for its own
    number of epochs. The members are :class:`TrainableAdapter` s of one MLP head each, started, with the arguments
    of seeds ``seed``, ``seed + 1``, ...; the rows are pooled vectors (what a head reads)."""

    def __init__(self, members: list[TrainableAdapter], *, batches: Batches, metrics: Metrics,
                 progress: ProgressCallback, history: list[dict[str, float]]) -> None:
        """``batches``: an epoch's row indexes from an order stream; ``metrics(targets, predicted, labels)``:
        accuracy and macro-F1; ``history``: where the first member's epoch records go (as a lone head's would)."""
        self.members = members
        self.args: TrainingArguments = members[0].args
        self.batches = batches
        self.metrics = metrics
        self.progress = progress
        self.history = history
        self.device = members[0].base.device
        self.dropout = float(members[0].method.config.dropout)
        self.best_epochs: list[int | None] = [None] * len(members)

    # -- the two phases -----------------------------------------------------------------------------------------------
    def train(self, train_split: Split, val_split: Split | None,
              class_weights: torch.Tensor | None) -> list[int | None]:
        """Each member's epochs with early stopping on validation; returns each one's best epoch."""
        count, args = len(self.members), self.args
        # Each member's streams, seeded as a lone head's: batch order, then (torch's generator) dropout.
        self._order_rngs = [random.Random(member.args.seed) for member in self.members]
        self._dropout_generators = [torch.Generator(self.device).manual_seed(member.args.seed)
                                    for member in self.members]
        self._initial = self._stack()
        stacked, optimizer, scheduler = self._optimizer(self._initial, train_split)
        started = time.perf_counter()
        epochs = min(args.max_epochs, args.last_epoch or args.max_epochs)
        best_scores: list[tuple | None] = [None] * count
        best_states: list[dict[str, torch.Tensor] | None] = [None] * count
        stale = [0] * count
        active = list(range(count))
        train_inputs = _pooled_inputs(train_split, self.device)  # stacked once, read every epoch
        val_inputs = _pooled_inputs(val_split, self.device) if val_split is not None else None
        for epoch in range(epochs):
            losses = self._epoch(stacked, optimizer, scheduler, train_split, train_inputs, class_weights, active)
            records = {k: {"epoch": epoch + 1, "train_loss": losses[k]} for k in active}
            if val_split is not None:
                for k, val in self._score(stacked, val_split, val_inputs, class_weights, active).items():
                    records[k].update({"val_loss": val["loss"], "val_accuracy": val["accuracy"],
                                       "val_macro_f1": val["macro_f1"]})
                    score = stopping_score(args, val)  # as a lone head stops (EpochLoop.train)
                    if best_scores[k] is None or score > best_scores[k]:
                        best_scores[k], self.best_epochs[k], stale[k] = score, epoch + 1, 0
                        best_states[k] = _member_state(stacked, k)
                    else:
                        stale[k] += 1
            if 0 in records:
                self.history.append(records[0])
            if val_split is not None:
                active = [k for k in active if stale[k] < args.patience]
            done = (epoch + 1) / epochs
            self.progress(done, f"{count} heads: epoch {epoch + 1}/{epochs}, {len(active)} still training"
                          + time_left(started, done))
            if not active:
                break
        for k in range(count):
            self._store(k, best_states[k] if best_states[k] is not None else _member_state(stacked, k))
        return self.best_epochs

    def refit(self, split: Split, epochs: list[int], class_weights: torch.Tensor | None) -> None:
        """Every member again from where :meth:`train` started, on ``split``, member ``k`` for ``epochs[k]`` epochs;
        their order and dropout streams continue where training left them, as a lone head's do."""
        stacked, optimizer, scheduler = self._optimizer(self._initial, split)
        inputs = _pooled_inputs(split, self.device)
        for epoch in range(max(epochs)):
            active = [k for k, last in enumerate(epochs) if last > epoch]
            self._epoch(stacked, optimizer, scheduler, split, inputs, class_weights, active)
            for k in active:
                if epochs[k] == epoch + 1:
                    self._store(k, _member_state(stacked, k))

    # -- one epoch, one step ------------------------------------------------------------------------------------------
    def _epoch(self, stacked: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, scheduler, split: Split,
               inputs: torch.Tensor, class_weights: torch.Tensor | None, active: list[int]) -> dict[int, float]:
        """One pass over ``split`` (its pooled vectors ``inputs``) for the ``active`` members; returns each one's
        mean training loss. Only they compute and draw (a member that has stopped costs nothing; its best epoch is
        already kept)."""
        targets = split.targets.to(self.device)
        orders = [self.batches(split, self._order_rngs[k]) for k in active]
        if len({len(order) for order in orders}) > 1:  # every head steps every step (AdamW moves even on a zero grad)
            raise ValueError(f"the heads' epochs have different numbers of batches: {[len(o) for o in orders]}")
        heads = torch.tensor(active, device=self.device)
        totals = torch.zeros(len(active), device=self.device)
        accelerator = accelerator_for(self.device)
        for step in range(len(orders[0])):
            batches = [order[step] for order in orders]
            rows, valid = _batch_rows(batches, self.device)
            params = stacked if len(active) == len(self.members) else {
                name: tensor.index_select(0, heads) for name, tensor in stacked.items()}
            with step_precision(self.args, self.members[0], split, accelerator):
                logits = _logits(params, inputs[rows], self._masks(active, batches, rows.shape[1]))
            per_member = _weighted_cross_entropy(logits.float(), targets[rows], valid, class_weights)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(per_member.sum())
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            totals += per_member.detach() * valid.sum(1)
        rows_seen = max(1, len(split.texts))
        return {k: float(total) / rows_seen for k, total in zip(active, totals.tolist())}

    def _masks(self, active: list[int], batches: list[list[int]],
               width: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Dropout multipliers for the MLP's inner layer and the pooled vector, ``[active members, width, ...]``:
        per member drawn as ``F.dropout`` draws them (the inner layer first, then the pooled vector, each its
        batch's shape) from that member's generator."""
        hidden, size = self.members[0].params[UP].shape
        generators = [self._dropout_generators[k] for k in active]
        inner = _dropout_masks(batches, generators, self.dropout, hidden, width, self.device)
        pooled = _dropout_masks(batches, generators, self.args.pooled_dropout, size, width, self.device)
        return inner, pooled

    def _score(self, stacked: dict[str, torch.Tensor], split: Split, inputs: torch.Tensor,
               class_weights: torch.Tensor | None, active: list[int]) -> dict[int, dict[str, float]]:
        """Each active member's loss, accuracy and macro-F1 on ``split`` (its pooled vectors ``inputs``), without
        dropout."""
        heads = torch.tensor(active, device=self.device)
        with torch.no_grad():
            params = {name: tensor.index_select(0, heads) for name, tensor in stacked.items()}
            logits = _logits(params, inputs.expand(len(active), -1, -1), (None, None)).float()
        targets = split.targets.to(self.device)
        labels = logits.shape[-1]
        scores = {}
        for index, k in enumerate(active):
            loss = F.cross_entropy(logits[index], targets, weight=class_weights).item()
            scores[k] = {"loss": loss, **self.metrics(split.targets.tolist(),
                                                      logits[index].argmax(-1).cpu().tolist(), labels)}
        return scores

    # -- the stacked parameters ---------------------------------------------------------------------------------------
    def _stack(self) -> dict[str, torch.Tensor]:
        """The members' current tensors, stacked ``[members, ...]`` (copies)."""
        return {name: torch.stack([_tensor_of(member, name).detach() for member in self.members]).clone()
                for name in _NAMES}

    def _optimizer(self, start: dict[str, torch.Tensor], split: Split):
        """Fresh trainable copies of ``start`` and an AdamW over them, its schedule set for ``split``'s rows."""
        stacked = {name: tensor.clone().requires_grad_(True) for name, tensor in start.items()}
        # Fused: one kernel per tensor. The same update as a lone head's AdamW, to rounding; five times faster here.
        optimizer = torch.optim.AdamW(list(stacked.values()), lr=learning_rate(self.args, self.members[0].method),
                                      weight_decay=self.args.weight_decay, fused=True)
        return stacked, optimizer, learning_rate_schedule(optimizer, self.args, len(split.texts))

    def _store(self, k: int, state: dict[str, torch.Tensor]) -> None:
        member = self.members[k]
        with torch.no_grad():
            for name, tensor in state.items():
                _tensor_of(member, name).copy_(tensor)


def _tensor_of(member: TrainableAdapter, name: str) -> torch.Tensor:
    return member.params[name] if name in member.params else member.head[name]


def _member_state(stacked: dict[str, torch.Tensor], k: int) -> dict[str, torch.Tensor]:
    return {name: tensor[k].detach().clone() for name, tensor in stacked.items()}


def _pooled_inputs(split: Split, device: torch.device) -> torch.Tensor:
    """The split's pooled vectors ``[rows, hidden]`` in float32 (cached encodings may be bfloat16)."""
    if not split.inputs or split.inputs[0].dim() != 1:
        raise ValueError("averaged heads train on pooled vectors (a head on the task prior or on the frozen base)")
    return torch.stack(split.inputs).to(device).float()


def _logits(stacked: dict[str, torch.Tensor], pooled: torch.Tensor,
            masks: tuple[torch.Tensor | None, torch.Tensor | None]) -> torch.Tensor:
    """Every member's logits ``[members, rows, labels]`` for its rows ``pooled [members, rows, hidden]``: the
    residual MLP head's forward (``adapters/head.py`` and ``forward_pooled``), batched over members."""
    inner_mask, pooled_mask = masks
    inner = F.gelu(torch.baddbmm(stacked[UP_BIAS].unsqueeze(1), pooled, stacked[UP].transpose(1, 2)))
    if inner_mask is not None:
        inner = inner * inner_mask
    pooled = pooled + torch.bmm(inner, stacked[DOWN].transpose(1, 2))
    if pooled_mask is not None:
        pooled = pooled * pooled_mask
    return torch.baddbmm(stacked["bias"].unsqueeze(1), pooled.float(), stacked["weight"].transpose(1, 2))


def _batch_rows(batches: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Each member's rows this step ``[members, widest batch]`` (past the end of a shorter batch: row 0), and which
    of them count."""
    width = max(len(batch) for batch in batches)
    rows = torch.zeros(len(batches), width, dtype=torch.long)
    valid = torch.zeros(len(batches), width, dtype=torch.bool)
    for k, batch in enumerate(batches):
        rows[k, : len(batch)] = torch.tensor(batch)
        valid[k, : len(batch)] = True
    return rows.to(device), valid.to(device)


def _dropout_masks(batches: list[list[int]], generators: list[torch.Generator], p: float, size: int, width: int,
                   device: torch.device) -> torch.Tensor | None:
    """``F.dropout``'s multipliers (Bernoulli(1 - p) / (1 - p)) ``[members, width, size]``, each member's batch
    drawn from its generator (ones past its end); None when ``p`` is 0 (a lone head draws nothing then either)."""
    if not p:
        return None
    masks = torch.ones(len(batches), width, size, device=device)
    for k, batch in enumerate(batches):
        masks[k, : len(batch)].bernoulli_(1 - p, generator=generators[k])  # a contiguous block: F.dropout's draw
    return masks.div_(1 - p)


def _weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                            class_weights: torch.Tensor | None) -> torch.Tensor:
    """Each member's mean cross-entropy over its valid rows ``[members]``, weighted per class as
    ``F.cross_entropy(weight=...)`` weights it (divided by the rows' summed weights)."""
    members, width, labels = logits.shape
    losses = F.cross_entropy(logits.reshape(-1, labels), targets.reshape(-1), weight=class_weights,
                             reduction="none").reshape(members, width)
    weights = valid.float() if class_weights is None else class_weights[targets] * valid
    return (losses * valid).sum(1) / weights.sum(1).clamp_min(1e-12)


__all__ = ["HeadEnsembleLoop"]
