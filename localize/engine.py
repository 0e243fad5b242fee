"""The serving engine: one frozen base model, many resident adapters, mixed-user batches in one pass.

Rows of a batch may belong to different users and methods. Rows are grouped by adapter *family* (same
method and shapes); each family's parameters are stacked to ``[rows, ...]`` and gathered per row. The
frozen layers below a family's first adapted layer are the same for every user, so they run once for the
whole batch. A user's head may read a shared *encoder* (the task prior's tuned top layers) instead of the
frozen base: the encoder runs once per distinct text for all the users that share it, and only the heads
run per row, so such users cost a fan-out no more than plain heads do. An encoder may be several priors side by
side (a ``lora_stack``): each runs on its own and the heads read their encodings concatenated. The engine knows
nothing about HTTP or SQL: callers name adapters by an opaque key.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from time import perf_counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import torch

from localize.adapters import AdapterMethod
from localize.adapters.base import apply_head
from localize import metrics, tracing
from localize.base_model import BaseModel
from localize.calibration import spread_evenly
from localize.errors import AdapterError
from localize.slot_bank import SlotBank

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
    # (bank, slot) while resident in an engine: params and head are then views into the bank's slot tensors.
    slot: tuple | None = field(default=None, repr=False, compare=False)
    # The shared adapter whose pooled encoding this adapter's head reads (its method parameters run first, its own
    # head is not used); None reads the frozen base. Stored as a reference (meta["encoder"]), never copied.
    encoder: AdapterWeights | None = field(default=None, repr=False, compare=False)
    _fingerprint: str | None = field(default=None, repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        """A digest of the method, its options and its parameters: the key of encodings computed under them."""
        if self._fingerprint is None:
            digest = hashlib.blake2b(digest_size=16)
            digest.update(json.dumps([self.method.name, self.method.config.to_dict(), self.base_model_id],
                                     sort_keys=True).encode())
            for name in sorted(self.params):
                digest.update(name.encode())
                digest.update(self.params[name].detach().float().cpu().contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def members(self) -> list[AdapterWeights] | None:
        """For adapters side by side (several task priors): each member as an adapter of its own, its head the
        stack's block for it times their number (the stack's head is their heads side by side over that number; the
        members' biases were averaged, so each gets the mean). ``None`` for any other adapter."""
        parts = self.method.members(self.params)
        if parts is None:
            return None
        count, members = len(parts), []
        for index, (method, params) in enumerate(parts):
            width = method.pooled_width
            head = {"weight": self.head["weight"][:, index * width:(index + 1) * width] * count,
                    "bias": self.head["bias"]} if self.head else {}
            members.append(AdapterWeights(method, params, head, self.labels, self.base_model_id,
                                          meta={"member": index}))
        return members

    @property
    def trainable_params(self) -> int:
        return sum(t.numel() for t in self.params.values()) + sum(t.numel() for t in self.head.values())

    @property
    def uniform_share(self) -> float:
        """The share of each answer's probability spread evenly over the labels, fitted with the temperature on
        validation rows (localize.calibration); 0 for versions trained before it existed."""
        return float((self.meta.get("metrics") or {}).get("uniform_share", 0.0))

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
        # A head reads its own method's pooled encoding, or its encoder's (several priors' side by side are wider).
        reads = (self.encoder or self).method
        width = reads.pooled_width if reads.dims == base.dims else base.dims.hidden_size
        if weight is None or weight.shape != (len(self.labels), width):
            shape = None if weight is None else tuple(weight.shape)
            problems.append(f"its head has shape {shape}, expected {(len(self.labels), width)} "
                            f"for labels {self.labels}")
        if self.encoder is not None:
            if self.method.start_layer != base.dims.num_layers or self.method.embeds_inputs:
                problems.append(f"a {self.method.name} adapter cannot read a shared encoder (only heads can)")
            try:
                self.encoder.check_compatible(base)
            except AdapterError as error:
                problems.append(f"its encoder: {str(error).removeprefix('adapter cannot be served: ')}")
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
    pooled = forward_pooled(base, method, params, start_hidden, mask, input_ids=input_ids, training=training,
                            pooled_dropout=pooled_dropout)
    return apply_head(pooled, head["weight"], head["bias"])


def forward_pooled(
    base: BaseModel,
    method: AdapterMethod,
    params: dict[str, torch.Tensor],
    start_hidden: torch.Tensor | None,
    mask: torch.Tensor,
    *,
    input_ids: torch.Tensor | None = None,
    training: bool = False,
    pooled_dropout: float = 0.0,
) -> torch.Tensor:
    """What :func:`forward_logits` feeds the head: the pooled encoding ``[batch, method.pooled_width]`` (float32)."""
    members = method.members(params)
    if members is not None:  # adapters side by side: each runs on its own, their encodings are concatenated
        return torch.cat([forward_pooled(base, member, member_params, start_hidden, mask, input_ids=input_ids,
                                         training=training, pooled_dropout=pooled_dropout)
                          for member, member_params in members], dim=-1)
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
    return pooled.float()


def encode_pooled(base: BaseModel, encoder: AdapterWeights, start_hidden: torch.Tensor | None, mask: torch.Tensor,
                  *, input_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The pooled encoding ``[batch, hidden]`` of texts under ``encoder``'s method parameters (shared by every
    row): what a head that reads this encoder sees."""
    return forward_pooled(base, encoder.method, encoder.params, start_hidden, mask, input_ids=input_ids)


def stack_rows(tensors: Sequence[dict[str, torch.Tensor]], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stacks each distinct adapter's tensors once, then gathers them per row: ``[rows, ...]``."""
    return {name: torch.stack([t[name] for t in tensors]).index_select(0, rows) for name in tensors[0]}


class Engine:
    """Holds the base once and an LRU of resident adapters in slot banks; predicts mixed-user batches."""

    # A head-only group is computed over contiguous bank slices (no gather) when its rows fill the slices densely.
    sweep_chunk = 1024

    def __init__(self, base: BaseModel, *, capacity: int = 1024, batch_size: int = 128) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be >= 1")
        self.base = base
        self.capacity = capacity
        self.batch_size = batch_size
        self._resident: OrderedDict[Hashable, AdapterWeights] = OrderedDict()
        self._banks: dict[tuple, SlotBank] = {}
        self._lock = threading.RLock()

    # -- residency ------------------------------------------------------------------------------------------------
    def adapter(self, key: Hashable, load: Callable[[], AdapterWeights]) -> AdapterWeights:
        """The resident adapter for ``key``, loading it (once) with ``load`` and evicting the least recent first."""
        with self._lock:
            if key in self._resident:
                self._resident.move_to_end(key)
                metrics.ADAPTER_HITS.inc()
                return self._resident[key]
        metrics.ADAPTER_MISSES.inc()
        began = perf_counter()
        weights = load()
        weights.check_compatible(self.base)
        weights.params, weights.head = _on(weights.params, self.base.device), _on(weights.head, self.base.device)
        metrics.ADAPTER_LOAD_DURATION.observe(perf_counter() - began)
        with self._lock:
            if key in self._resident:  # another thread loaded it meanwhile
                self._resident.move_to_end(key)
                return self._resident[key]
            while len(self._resident) >= self.capacity:
                evicted, old = self._resident.popitem(last=False)
                self._release(old)
                metrics.ADAPTER_EVICTIONS.inc()
                logger.debug("evicted adapter %s", evicted)
            bank_key = _bank_key(weights)
            bank = self._banks.get(bank_key)
            if bank is None:
                bank = self._banks[bank_key] = SlotBank(weights, self.capacity, self.base.device)
            bank.add(weights)
            self._resident[key] = weights
            metrics.ADAPTERS_RESIDENT.inc()
            return weights

    def resident(self, key: Hashable) -> AdapterWeights | None:
        """The adapter resident under ``key``, or None: never loads (callers on an event loop load elsewhere)."""
        with self._lock:
            weights = self._resident.get(key)
            if weights is not None:
                self._resident.move_to_end(key)
                metrics.ADAPTER_HITS.inc()
            return weights

    def evict(self, key: Hashable) -> None:
        with self._lock:
            weights = self._resident.pop(key, None)
            if weights is not None:
                self._release(weights)

    def resident_keys(self) -> list[Hashable]:
        with self._lock:
            return list(self._resident)

    def resident_bytes(self) -> int:
        """Bytes held by the slot banks (allocated slots, free ones included)."""
        with self._lock:
            return sum(t.numel() * t.element_size() for bank in self._banks.values() for t in bank.tensors.values())

    def _release(self, weights: AdapterWeights) -> None:
        metrics.ADAPTERS_RESIDENT.dec()
        if weights.slot is not None:
            bank, slot = weights.slot
            bank.remove(slot)

    # -- prediction -----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, rows: Sequence[tuple[AdapterWeights, str]]) -> list[Prediction]:
        """One prediction per ``(adapter, text)`` row; rows of many users share forward passes.

        Rows whose texts repeat (one text for many users) are grouped however far apart they are, so the frozen
        encoder runs once per distinct text; other rows go in batches of ``batch_size``."""
        if not rows:
            return []
        began = perf_counter()
        with tracing.span("engine.pass", rows=len(rows)):
            if len({text for _, text in rows}) * 4 <= len(rows):  # fan-out: encode once, sweep every user
                results = self._predict_batch(rows)
            else:
                results = []
                for start in range(0, len(rows), self.batch_size):
                    results.extend(self._predict_batch(rows[start : start + self.batch_size]))
        metrics.observe_engine_pass(len(rows), perf_counter() - began)
        return results

    def _predict_batch(self, rows: Sequence[tuple[AdapterWeights, str]]) -> list[Prediction]:
        base = self.base
        # Frozen work depends on the text only: each distinct text is encoded once, however many users ask.
        text_slot: dict[str, int] = {}
        text_of_row = torch.tensor([text_slot.setdefault(text, len(text_slot)) for _, text in rows],
                                   device=base.device)
        input_ids, mask = base.tokenize(list(text_slot))  # [distinct texts, seq]
        families: dict[tuple, list[int]] = {}
        encoders: dict[int, AdapterWeights] = {}
        for index, (weights, _) in enumerate(rows):
            encoder = weights.encoder
            if encoder is not None:
                encoders.setdefault(id(encoder), encoder)
            families.setdefault((weights.method.family(), id(encoder) if encoder is not None else None), []).append(index)

        # The frozen part below each family's (or shared encoder's) first adapted layer runs once per distinct text.
        firsts = [rows[idx[0]][0].method for idx in families.values()] + [e.method for e in encoders.values()]
        starts = sorted({method.start_layer for method in firsts if not method.embeds_inputs})
        frozen: dict[int, torch.Tensor] = {}
        if starts:
            hidden, layer = base.embed(input_ids), 0
            for start in starts:
                hidden = base.run_layers(hidden, mask, start=layer, stop=start)
                frozen[start], layer = hidden, start
            if base.dims.num_layers in frozen:  # nothing inside the encoder changes: rows need only the pooled vector
                frozen[base.dims.num_layers] = base.pool(frozen[base.dims.num_layers], mask).float()
        # Each shared encoder runs once over the distinct texts of the rows that read it.
        encoded = {key: self._encode(encoder, [i for (_, enc), idx in families.items() if enc == key for i in idx],
                                     text_of_row, frozen, input_ids, mask)
                   for key, encoder in encoders.items()}

        max_labels = max(len(weights.labels) for weights, _ in rows)
        logits = torch.full((len(rows), max_labels), float("-inf"), device=base.device)
        pending = []  # groups whose parameters were gathered (copies): they run without holding the lock
        with self._lock:  # slots are read, and swept, while no other thread can evict and reuse them
            for (_, encoder_key), indexes in families.items():
                method = rows[indexes[0]][0].method
                pooled = encoded[encoder_key] if encoder_key is not None else frozen.get(base.dims.num_layers)
                # Within a family, rows of one slot bank gather from it; adapters that are not resident are stacked.
                by_bank: dict[int, tuple[SlotBank | None, list[int], list[int]]] = {}
                for i in indexes:
                    slot = rows[i][0].slot
                    bank = slot[0] if slot is not None else None
                    entry = by_bank.setdefault(id(bank), (bank, [], []))
                    entry[1].append(i)
                    entry[2].append(slot[1] if slot is not None else -1)
                for bank, members, slots in by_bank.values():
                    row_index = torch.tensor(members, device=base.device)
                    text_index = text_of_row.index_select(0, row_index)
                    if bank is not None and self._sweeps(method, slots, text_index):
                        group = self._sweep(bank, method, pooled, slots, text_index)
                        logits[row_index, : group.shape[1]] = group
                    elif bank is not None:
                        pending.append((row_index, text_index, method, pooled,
                                        *bank.gather(torch.tensor(slots, device=base.device))))
                    else:
                        pending.append((row_index, text_index, method, pooled,
                                        *self._stack([rows[i][0] for i in members], base.device)))
        for row_index, text_index, method, pooled, params, head in pending:
            # Rows that run encoder layers go batch_size at a time: a fan-out of one text to thousands of late-adapter
            # users must not hold every row's activations at once.
            step = len(row_index) if method.start_layer == base.dims.num_layers and not method.embeds_inputs \
                else self.batch_size
            for start in range(0, len(row_index), step):
                part = slice(start, start + step)
                texts = text_index[part]
                group_mask = mask.index_select(0, texts)
                if method.embeds_inputs:
                    start_hidden, ids = None, input_ids.index_select(0, texts)
                elif method.start_layer == base.dims.num_layers:  # the frozen or shared encoder's pooled vectors
                    start_hidden, ids = pooled.index_select(0, texts), None
                else:
                    start_hidden, ids = frozen[method.start_layer].index_select(0, texts), None
                logits[row_index[part], : head["weight"].shape[1]] = forward_logits(
                    base, method, {k: v[part] for k, v in params.items()}, {k: v[part] for k, v in head.items()},
                    start_hidden, group_mask, input_ids=ids)
        return answers(rows, torch.softmax(logits, dim=-1).cpu())

    def _encode(self, encoder: AdapterWeights, members: list[int], text_of_row: torch.Tensor,
                frozen: dict[int, torch.Tensor], input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``encoder``'s pooled encodings ``[distinct texts, width]`` (rows for texts no member reads stay zero)."""
        base = self.base
        if encoder.slot is not None:
            with self._lock:  # a private copy: a resident encoder's slot could be reused once the lock is released
                encoder = AdapterWeights(encoder.method, {k: v.clone() for k, v in encoder.params.items()}, {},
                                         encoder.labels, encoder.base_model_id)
        elif any(t.device != base.device for t in encoder.params.values()):  # not resident: on the CPU
            encoder = AdapterWeights(encoder.method, _on(encoder.params, base.device), {}, encoder.labels,
                                     encoder.base_model_id)
        texts = text_of_row.index_select(0, torch.tensor(members, device=base.device)).unique()
        method = encoder.method
        table = torch.zeros(mask.shape[0], method.pooled_width, device=base.device)
        for start in range(0, len(texts), self.batch_size):
            part = texts[start : start + self.batch_size]
            if method.embeds_inputs:
                start_hidden, ids = None, input_ids.index_select(0, part)
            else:
                start_hidden, ids = frozen[method.start_layer].index_select(0, part), None
            table[part] = encode_pooled(base, encoder, start_hidden, mask.index_select(0, part), input_ids=ids).float()
        return table

    def _sweeps(self, method: AdapterMethod, slots: list[int], text_index: torch.Tensor) -> bool:
        """Whether to compute a head-only group over contiguous bank slices: when few texts meet many users whose
        slots fill their range densely, as in a fan-out (reading the slices costs less than copying rows out)."""
        if method.embeds_inputs or method.start_layer != self.base.dims.num_layers or len(slots) < 64:
            return False
        texts = int(text_index.unique().numel())
        return texts * (max(slots) - min(slots) + 1) <= 2 * len(slots)

    def _sweep(self, bank: SlotBank, method: AdapterMethod, pooled: torch.Tensor, slots: list[int],
               text_index: torch.Tensor) -> torch.Tensor:
        """Head-only logits ``[rows, labels]``: the distinct texts' pooled vectors against slices of the bank, so
        each user's weights are read once for all the texts (one text: a matrix-vector product per weight)."""
        low, high = min(slots), max(slots) + 1
        distinct, local = text_index.unique(return_inverse=True)
        vectors = pooled.index_select(0, distinct)  # [texts, hidden]
        chunks = []
        for start in range(low, high, self.sweep_chunk):
            users = min(start + self.sweep_chunk, high) - start
            params, head = bank.views(start, start + users)
            if len(vectors) == 1:
                x = vectors[0].expand(users, -1)  # one pooled vector for every user, not copied: [users, hidden]
            else:
                x = vectors.unsqueeze(0).expand(users, -1, -1)  # [users, texts, hidden]
            hooks = method.hooks(params, training=False)
            logits = apply_head(hooks.transform_pooled(x), head["weight"], head["bias"])
            chunks.append(logits.view(users, len(vectors), -1))  # [users, texts, labels]
        table = torch.cat(chunks)
        slot_index = torch.tensor(slots, device=pooled.device) - low
        return table[slot_index, local]

    @staticmethod
    def _stack(adapters: list[AdapterWeights],
               device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Rows' parameters of adapters that are not resident, stacked on ``device`` (their tensors may be on the
        CPU: loaded from a store, or trained there)."""
        distinct: dict[int, int] = {}
        for weights in adapters:
            distinct.setdefault(id(weights), len(distinct))
        unique = list({id(w): w for w in adapters}.values())
        gather = torch.tensor([distinct[id(w)] for w in adapters], device=device)
        max_labels = max(len(w.labels) for w in unique)
        params = stack_rows([_on(w.params, device) for w in unique], gather) if unique[0].params else {}
        head = stack_rows([_on(_padded_head(w, max_labels), device) for w in unique], gather)
        return params, head


def answers(rows: Sequence[tuple[AdapterWeights, str]], probabilities: torch.Tensor) -> list[Prediction]:
    """Each row's prediction from ``probabilities [rows, max labels]`` (softmax of the padded logits). Rows that
    share a label count and a uniform share are spread in one operation: row by row, this step was a fixed cost of
    about 10 us per row, which a GPU's encoder pass (5.8 ms for 128 texts on an H200) does not hide."""
    answered: list[list[float]] = [[] for _ in rows]
    groups: dict[tuple, list[int]] = {}
    for row, (weights, _) in enumerate(rows):
        groups.setdefault((len(weights.labels), weights.uniform_share), []).append(row)
    for (labels, share), members in groups.items():
        for row, probs in zip(members, spread_evenly(probabilities[members, :labels], share).tolist()):
            answered[row] = probs
    predictions = []
    for (weights, _), probs in zip(rows, answered):
        best = max(range(len(probs)), key=probs.__getitem__)
        predictions.append(Prediction(weights.labels[best], dict(zip(weights.labels, probs)), weights.version))
    return predictions


def _on(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def _bank_key(weights: AdapterWeights) -> tuple:
    shapes = tuple((part, name, tuple(t.shape), t.dtype) for part, tensors in
                   (("params", weights.params), ("head", weights.head)) for name, t in sorted(tensors.items()))
    return (weights.method.family(), shapes)


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
