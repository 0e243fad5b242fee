"""Slot banks: the resident adapters of one family and label count, stacked in preallocated tensors, so that a
batch gathers its rows' parameters with one ``index_select`` per tensor (``localize.engine`` keeps one per family)."""
from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from localize.engine import AdapterWeights


class SlotBank:
    """The resident adapters of one family and label count, stacked in preallocated tensors ``[slots, ...]``.

    As vLLM keeps LoRA weights in slot buffers, a resident adapter's tensors are views into its slot, so a batch
    gathers its rows' parameters with one ``index_select`` per tensor instead of stacking per-user tensors, and
    one text fanned out to thousands of users reads contiguous slices of the bank without copying anything.
    Callers hold the engine's lock around every method."""

    def __init__(self, weights: AdapterWeights, limit: int, device: torch.device) -> None:
        self.limit = limit
        self.device = device
        self.tensors: dict[tuple[str, str], torch.Tensor] = {
            (part, name): torch.empty((0, *t.shape), dtype=t.dtype, device=device)
            for part, tensors in (("params", weights.params), ("head", weights.head))
            for name, t in tensors.items()
        }
        self.owners: list[AdapterWeights | None] = []
        self.free: list[int] = []  # a min-heap: low slots are reused first, so occupied slots stay dense

    @property
    def slots(self) -> int:
        return len(self.owners)

    def add(self, weights: AdapterWeights) -> int:
        if self.free:
            slot = heapq.heappop(self.free)
        else:
            slot = len(self.owners)
            self.owners.append(None)
            if slot >= self._allocated():
                self._grow(slot + 1)
        for (part, name), bank in self.tensors.items():
            bank[slot].copy_(getattr(weights, part)[name])
        self.owners[slot] = weights
        self._bind(weights, slot)
        return slot

    def remove(self, slot: int) -> None:
        """Frees ``slot``; its adapter gets private copies, so a caller still holding it keeps correct tensors."""
        weights = self.owners[slot]
        if weights is None:
            return
        weights.params = {name: t.clone() for name, t in weights.params.items()}
        weights.head = {name: t.clone() for name, t in weights.head.items()}
        weights.slot = None
        self.owners[slot] = None
        heapq.heappush(self.free, slot)

    def gather(self, slots: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per-row copies ``[rows, ...]`` of the slots' parameters and heads."""
        params, head = {}, {}
        for (part, name), bank in self.tensors.items():
            (params if part == "params" else head)[name] = bank.index_select(0, slots)
        return params, head

    def views(self, low: int, high: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Slots ``low..high-1`` as views ``[high-low, ...]`` (no copy)."""
        params, head = {}, {}
        for (part, name), bank in self.tensors.items():
            (params if part == "params" else head)[name] = bank[low:high]
        return params, head

    def _allocated(self) -> int:
        return next(iter(self.tensors.values())).shape[0] if self.tensors else 1 << 62

    def _grow(self, needed: int) -> None:
        if self.device.type == "cpu":
            # Reserve every slot the LRU allows at once: untouched pages of an empty tensor cost no memory on the
            # CPU, and the bank then never copies or re-points resident adapters.
            size = max(self.limit, needed)
        else:  # GPU memory is committed on allocation: grow geometrically
            size = min(max(needed, 2 * self._allocated(), 8), max(self.limit, needed))
        for key, bank in self.tensors.items():
            grown = torch.empty((size, *bank.shape[1:]), dtype=bank.dtype, device=self.device)
            grown[: bank.shape[0]] = bank
            self.tensors[key] = grown
        for slot, owner in enumerate(self.owners):  # views of the old tensors now point into the new ones
            if owner is not None:
                self._bind(owner, slot)

    def _bind(self, weights: AdapterWeights, slot: int) -> None:
        weights.params = {name: self.tensors[("params", name)][slot] for name in weights.params}
        weights.head = {name: self.tensors[("head", name)][slot] for name in weights.head}
        weights.slot = (self, slot)
