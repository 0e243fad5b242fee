"""The serving engine: one frozen base model, many resident adapters, mixed-user batches in one pass.

Rows of a batch may belong to different users and methods. Rows are grouped by adapter *family* (same
method and shapes); each family's parameters are stacked to ``[rows, ...]`` and gathered per row. The
frozen layers below a family's first adapted layer are the same for every user, so they run once for the
whole batch. The engine knows nothing about HTTP or SQL: callers name adapters by an opaque key.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import torch

from localize.adapters import AdapterMethod
from localize.adapters.base import apply_head
from localize.base_model import BaseModel
from localize.errors import AdapterError

logger = logging.getLogger(__name__)


@dataclass
class AdapterWeights:
    """A parsed adapter, ready to serve: method parameters, the user's head and label names."""

    method: AdapterMethod
    params: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor]  # weight [labels, hidden], bias [labels]
    labels: list[str]
    base_model_id: str
    version: int | None = None
    meta: dict = field(default_factory=dict)

    @property
    def trainable_params(self) -> int:
        return sum(t.numel() for t in self.params.values()) + sum(t.numel() for t in self.head.values())

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [*self.params.values(), *self.head.values()])

    def check_compatible(self, base: BaseModel) -> None:
        """Collects every reason this adapter cannot run on ``base`` into one error."""
        problems = []
        if self.base_model_id != base.dims.model_id:
            problems.append(f"it was trained on base {self.base_model_id!r}, the engine serves {base.dims.model_id!r}")
        if self.method.dims != base.dims:
            problems.append(f"its shapes {self.method.dims} differ from the base's {base.dims}")
        weight = self.head.get("weight")
        if weight is None or weight.shape != (len(self.labels), base.dims.hidden_size):
            shape = None if weight is None else tuple(weight.shape)
            problems.append(
                f"its head has shape {shape}, expected {(len(self.labels), base.dims.hidden_size)} "
                f"for labels {self.labels}"
            )
        if problems:
            raise AdapterError("adapter cannot be served: " + "; ".join(problems))


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]
    version: int | None


def forward_logits(
    base: BaseModel,
    method: AdapterMethod,
    params: dict[str, torch.Tensor],
    head: dict[str, torch.Tensor],
    start_hidden: torch.Tensor | None,
    mask: torch.Tensor,
    *,
    input_ids: torch.Tensor | None = None,
    training: bool = False,
    pooled_dropout: float = 0.0,
) -> torch.Tensor:
    """Logits ``[batch, labels]`` for rows that each carry their own (stacked) parameters.

    ``start_hidden`` is the frozen input of ``method.start_layer`` ``[batch, seq, hidden]``, or, when the
    method embeds the inputs itself (``method.embeds_inputs``), ``None`` together with ``input_ids``. For a
    method that changes no layer ``start_hidden`` may already be the pooled embedding ``[batch, hidden]``.
    """
    hooks = method.hooks(params, training=training)
    if method.position_offset:
        hidden = base.embed(input_ids, position_offset=method.position_offset)
        pooled = base.pool(base.run_layers(hidden, mask, hooks=hooks), mask)
    elif method.changes_embeddings:
        prompts = hooks.input_prompts()  # [(batch,) n_virtual, hidden]
        if prompts.dim() == 2:
            prompts = prompts.unsqueeze(0).expand(mask.shape[0], -1, -1)
        hidden = base.embed(input_ids, prompts)
        full_mask = torch.cat([mask.new_ones(mask.shape[0], prompts.shape[1]), mask], dim=1)
        hidden = base.run_layers(hidden, full_mask, hooks=hooks)
        pooled = base.pool(hidden[:, prompts.shape[1] :], mask)  # the virtual tokens are not pooled
    elif start_hidden.dim() == 2:
        pooled = start_hidden
    else:
        hidden = base.run_layers(start_hidden, mask, start=method.start_layer, hooks=hooks)
        pooled = base.pool(hidden, mask)
    pooled = hooks.transform_pooled(pooled.float())
    if pooled_dropout and training:
        pooled = torch.nn.functional.dropout(pooled, pooled_dropout, training=True)
    return apply_head(pooled.float(), head["weight"], head["bias"])


def stack_rows(tensors: Sequence[dict[str, torch.Tensor]], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stacks each distinct adapter's tensors once, then gathers them per row: ``[rows, ...]``."""
    return {name: torch.stack([t[name] for t in tensors]).index_select(0, rows) for name in tensors[0]}


class Engine:
    """Holds the base once and an LRU of resident adapters; predicts mixed-user batches."""

    def __init__(self, base: BaseModel, *, capacity: int = 1024, batch_size: int = 128) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be >= 1")
        self.base = base
        self.capacity = capacity
        self.batch_size = batch_size
        self._resident: OrderedDict[Hashable, AdapterWeights] = OrderedDict()
        self._lock = threading.RLock()

    # -- residency ------------------------------------------------------------------------------------------------
    def adapter(self, key: Hashable, load: Callable[[], AdapterWeights]) -> AdapterWeights:
        """The resident adapter for ``key``, loading it (once) with ``load`` and evicting the least recent first."""
        with self._lock:
            if key in self._resident:
                self._resident.move_to_end(key)
                return self._resident[key]
        weights = load()
        weights.check_compatible(self.base)
        weights.params = {name: t.to(self.base.device) for name, t in weights.params.items()}
        weights.head = {name: t.to(self.base.device) for name, t in weights.head.items()}
        with self._lock:
            if key in self._resident:  # another thread loaded it meanwhile
                self._resident.move_to_end(key)
                return self._resident[key]
            while len(self._resident) >= self.capacity:
                evicted, _ = self._resident.popitem(last=False)
                logger.debug("evicted adapter %s", evicted)
            self._resident[key] = weights
            return weights

    def evict(self, key: Hashable) -> None:
        with self._lock:
            self._resident.pop(key, None)

    def resident_keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._resident)

    # -- prediction -----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, rows: Sequence[tuple[AdapterWeights, str]]) -> list[Prediction]:
        """One prediction per ``(adapter, text)`` row; rows of many users share forward passes."""
        results: list[Prediction] = []
        for start in range(0, len(rows), self.batch_size):
            results.extend(self._predict_batch(rows[start : start + self.batch_size]))
        return results

    def _predict_batch(self, rows: Sequence[tuple[AdapterWeights, str]]) -> list[Prediction]:
        base = self.base
        # Frozen work depends on the text only: each distinct text is encoded once, however many users ask.
        slot: dict[str, int] = {}
        text_of_row = torch.tensor([slot.setdefault(text, len(slot)) for _, text in rows], device=base.device)
        input_ids, mask = base.tokenize(list(slot))  # [distinct texts, seq]
        groups: dict[tuple, list[int]] = {}
        for index, (weights, _) in enumerate(rows):
            groups.setdefault(weights.method.family(), []).append(index)

        # The frozen part below each family's first adapted layer runs once for the whole batch.
        starts = sorted({rows[idx[0]][0].method.start_layer for idx in groups.values()
                         if not rows[idx[0]][0].method.embeds_inputs})
        frozen: dict[int, torch.Tensor] = {}
        if starts:
            hidden, layer = base.embed(input_ids), 0
            for start in starts:
                hidden = base.run_layers(hidden, mask, start=layer, stop=start)
                frozen[start], layer = hidden, start
            if base.dims.num_layers in frozen:  # nothing inside the encoder changes: rows need only the pooled vector
                frozen[base.dims.num_layers] = base.pool(frozen[base.dims.num_layers], mask)

        max_labels = max(len(weights.labels) for weights, _ in rows)
        logits = torch.full((len(rows), max_labels), float("-inf"), device=base.device)
        for indexes in groups.values():
            method = rows[indexes[0]][0].method
            distinct: dict[int, int] = {}
            for i in indexes:
                distinct.setdefault(id(rows[i][0]), len(distinct))
            adapters = list({id(rows[i][0]): rows[i][0] for i in indexes}.values())
            gather = torch.tensor([distinct[id(rows[i][0])] for i in indexes], device=base.device)
            params = stack_rows([a.params for a in adapters], gather) if adapters[0].params else {}
            head = stack_rows([_padded_head(a, max_labels) for a in adapters], gather)
            row_index = torch.tensor(indexes, device=base.device)
            text_index = text_of_row.index_select(0, row_index)
            group_mask = mask.index_select(0, text_index)
            if method.embeds_inputs:
                start_hidden, ids = None, input_ids.index_select(0, text_index)
            else:
                start_hidden, ids = frozen[method.start_layer].index_select(0, text_index), None
            logits[row_index] = forward_logits(base, method, params, head, start_hidden, group_mask, input_ids=ids)

        probabilities = torch.softmax(logits, dim=-1).cpu()
        predictions = []
        for row, (weights, _) in enumerate(rows):
            probs = probabilities[row, : len(weights.labels)].tolist()
            best = max(range(len(probs)), key=probs.__getitem__)
            predictions.append(
                Prediction(weights.labels[best], dict(zip(weights.labels, probs)), weights.version)
            )
        return predictions


def _padded_head(weights: AdapterWeights, num_labels: int) -> dict[str, torch.Tensor]:
    """Pads a head to ``num_labels`` with impossible classes, so users with different label sets share a batch."""
    weight, bias = weights.head["weight"], weights.head["bias"]
    missing = num_labels - weight.shape[0]
    if missing == 0:
        return weights.head
    return {
        "weight": torch.cat([weight, weight.new_zeros(missing, weight.shape[1])]),
        "bias": torch.cat([bias, bias.new_full((missing,), float("-inf"))]),
    }
