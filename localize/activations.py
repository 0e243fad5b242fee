"""Cache of frozen activations, keyed by (base model, layer, text hash).

The base never changes, so the input of an adapter's first adapted layer is the same for every user and
every epoch: it is computed once per text and reused, which is what makes per-user training fast.
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from localize.base_model import BaseModel, cpu_has_native_bf16, text_hash

if TYPE_CHECKING:
    from localize.engine import AdapterWeights


class ActivationCache:
    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _put(self, key: tuple, value: torch.Tensor, *, pooled: bool = False) -> None:
        """``pooled``: the value is a text's pooled embedding or encoding, not a layer's input."""
        size = value.numel() * value.element_size()
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()

    def _get(self, key: tuple) -> torch.Tensor | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def _pooled_precision(self, base: BaseModel) -> contextlib.AbstractContextManager:
        """The precision pooled embeddings and encodings are computed in: float32 (they are served)."""
        return contextlib.nullcontext()

    def preload(self, base: BaseModel, layer: int, texts: list[str], values: list[torch.Tensor]) -> None:
        """Seeds the cache with activations computed earlier (e.g. saved by an evaluation run)."""
        for text, value in zip(texts, values, strict=True):
            self._put((base.dims.model_id, base.max_seq_length, layer, text_hash(text)), value)

    @torch.inference_mode()
    def frozen_inputs(self, base: BaseModel, texts: list[str], layer: int, batch_size: int = 128,
                      progress: Callable[[int, int], None] | None = None) -> list[torch.Tensor]:
        """Per text, the frozen input of ``layer``: ``[tokens, hidden]``; for ``layer == num_layers`` the
        pooled embedding ``[hidden]``. ``progress(done, total)`` follows the texts that had to be run."""
        keys = [(base.dims.model_id, base.max_seq_length, layer, text_hash(text)) for text in texts]
        found = [self._get(key) for key in keys]
        missing = [i for i, value in enumerate(found) if value is None]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        # A text whose input to a lower layer is cached (a task prior's first tuned layer) starts there: the pooled
        # embedding of a text a LoRA prior trained on runs four layers, not six.
        starts = {i: self._cached_below(base, texts[i], layer) for i in missing}
        # Sorting by length keeps padding, and so wasted work, small.
        missing.sort(key=lambda i: (starts[i][0], len(texts[i])))
        done = 0
        for first in sorted({start for start, _ in starts.values()}):
            group = [i for i in missing if starts[i][0] == first]
            for offset in range(0, len(group), batch_size):
                chunk = group[offset : offset + batch_size]
                if first == 0:
                    input_ids, mask = base.tokenize([texts[i] for i in chunk])
                    hidden = base.embed(input_ids)
                else:
                    hidden, mask = pad_hidden([starts[i][1] for i in chunk])
                    hidden, mask = hidden.to(base.device), mask.to(base.device)
                pooled = layer == base.dims.num_layers
                with self._pooled_precision(base) if pooled else contextlib.nullcontext():
                    hidden = base.run_layers(hidden, mask, start=first, stop=layer)
                if pooled:
                    outputs = list(base.pool(hidden, mask).float().cpu())
                else:
                    lengths = mask.sum(1).tolist()
                    outputs = [hidden[row, :length].float().cpu() for row, length in enumerate(lengths)]
                for i, value in zip(chunk, outputs):
                    value = value.clone()
                    found[i] = value
                    self._put(keys[i], value, pooled=pooled)
                done += len(chunk)
                if progress is not None:
                    progress(done, len(missing))
        return found  # type: ignore[return-value]

    def _cached_below(self, base: BaseModel, text: str, layer: int) -> tuple[int, torch.Tensor | None]:
        """The highest layer below ``layer`` whose frozen input for ``text`` is cached, and that input
        (``(0, None)``: none is)."""
        digest = text_hash(text)
        for lower in range(min(layer, base.dims.num_layers) - 1, 0, -1):
            value = self._get((base.dims.model_id, base.max_seq_length, lower, digest))
            if value is not None:
                return lower, value
        return 0, None

    @torch.inference_mode()
    def encoded(self, base: BaseModel, encoder: AdapterWeights, texts: list[str], batch_size: int = 64,
                progress: Callable[[int, int], None] | None = None) -> list[torch.Tensor]:
        """Per text, its pooled encoding ``[hidden]`` under ``encoder``'s method parameters (a task prior's tuned
        layers), keyed by the encoder's fingerprint: every user of a task reads the same encodings.
        ``progress(done, total)`` follows the texts that had to be run."""
        from localize.engine import encode_pooled

        members = encoder.members()
        if members is not None:  # priors side by side: each member's encodings are cached (and reused) on their own
            parts = [self.encoded(base, member, texts, batch_size, progress) for member in members]
            return [torch.cat(row) for row in zip(*parts)]
        keys = [(base.dims.model_id, base.max_seq_length, "encoded", encoder.fingerprint, text_hash(t)) for t in texts]
        found = [self._get(key) for key in keys]
        missing = sorted((i for i, value in enumerate(found) if value is None), key=lambda i: len(texts[i]))
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        method = encoder.method
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            chunk_texts = [texts[i] for i in chunk]
            if method.embeds_inputs:
                input_ids, mask = base.tokenize(chunk_texts)
                start_hidden = None
            else:
                rows = self.frozen_inputs(base, chunk_texts, method.start_layer)
                if rows[0].dim() == 1:
                    start_hidden, mask = torch.stack(rows), torch.ones(len(rows), 1, dtype=torch.long)
                else:
                    start_hidden, mask = pad_hidden(rows)
                input_ids, start_hidden = None, start_hidden.to(base.device)
            with self._pooled_precision(base):
                pooled = encode_pooled(base, encoder, start_hidden, mask.to(base.device),
                                       input_ids=None if input_ids is None else input_ids.to(base.device))
            for i, value in zip(chunk, pooled.float().cpu()):
                found[i] = value.clone()
                self._put(keys[i], found[i], pooled=True)
            if progress is not None:
                progress(start + len(chunk), len(missing))
        return found  # type: ignore[return-value]


class ScoringActivationCache(ActivationCache):
    """A short-lived cache over ``parent`` for scoring candidates that are never served (the recipe choice's).

    Layers' inputs are read from and written to ``parent`` in float32 (the served prior trains on them next);
    pooled embeddings and encodings stay here, computed in bfloat16 where the CPU multiplies it in hardware (Intel
    AMX, AVX512-BF16) and on a GPU that has it: about half the time of float32 for the same answers to three
    decimals, and never read by serving, whose answers are computed in float32 (the served prior is trained again
    after the choice, and ``parent`` gets none of the pooled values computed here)."""

    def __init__(self, parent: ActivationCache) -> None:
        super().__init__(max_bytes=parent.max_bytes)
        self.parent = parent

    def _get(self, key: tuple) -> torch.Tensor | None:
        value = super()._get(key)
        return value if value is not None else self.parent._get(key)

    def _put(self, key: tuple, value: torch.Tensor, *, pooled: bool = False) -> None:
        if pooled:
            super()._put(key, value)
        else:
            self.parent._put(key, value)

    def _pooled_precision(self, base: BaseModel) -> contextlib.AbstractContextManager:
        if base.device.type == "cpu" and cpu_has_native_bf16():
            return torch.autocast("cpu", dtype=torch.bfloat16)
        if base.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def pad_hidden(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[tokens_i, hidden]`` rows -> ``hidden [batch, max_tokens, hidden]`` and ``mask [batch, max_tokens]``."""
    longest = max(row.shape[0] for row in rows)
    hidden = rows[0].new_zeros(len(rows), longest, rows[0].shape[1])
    mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for i, row in enumerate(rows):
        hidden[i, : row.shape[0]] = row
        mask[i, : row.shape[0]] = 1
    return hidden, mask


_shared_cache: ActivationCache | None = None


def get_activation_cache() -> ActivationCache:
    global _shared_cache
    if _shared_cache is None:
        _shared_cache = ActivationCache()
    return _shared_cache
