"""What every adapter method provides, and the registry that holds them.

An adapter is a dict of tensors named as PEFT names them (so PEFT can load it) plus the user's own
classification head. At run time the engine stacks the tensors of the rows in a batch to ``[batch, ...]``
and asks the method for :class:`BatchHooks` that act on those rows inside the frozen encoder.
"""
from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from peft import PeftConfig

    from localize.base_model import BaseDims, BaseModel

# The six linear maps of a BERT layer, and their module paths inside ``encoder.layer.<i>``.
SITE_MODULES = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_output": "attention.output.dense",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
}


def peft_key(layer: int, site: str, suffix: str) -> str:
    return f"base_model.model.encoder.layer.{layer}.{SITE_MODULES[site]}.{suffix}"


def peft_target_regex(layers: list[int], sites: list[str]) -> str:
    """A regex for PEFT's ``target_modules`` that names exactly these layers and sites."""
    layer_part = "|".join(str(layer) for layer in layers)
    site_part = "|".join(SITE_MODULES[site].replace(".", r"\.") for site in sites)
    return rf".*encoder\.layer\.({layer_part})\.({site_part})"


@dataclasses.dataclass
class MethodConfig:
    """Base of every method's config. Subclasses are dataclasses whose fields all have defaults."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> MethodConfig:
        values = dict(values or {})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for {cls.__name__}; known: {sorted(known)}")
        return cls(**values)


def check_layers(layers: list[int] | None, num_layers: int) -> list[int]:
    """``None`` means every layer; negative indexes count from the top (-1 is the last layer)."""
    if layers is None:
        return list(range(num_layers))
    resolved = sorted({layer + num_layers if layer < 0 else layer for layer in layers})
    bad = [layer for layer in resolved if not 0 <= layer < num_layers]
    if bad or not resolved:
        raise ValueError(f"layers {layers} are not valid for a base with {num_layers} layers")
    return resolved


class BatchHooks:
    """Per-row changes to the frozen encoder; the defaults change nothing."""

    def input_prompts(self) -> torch.Tensor | None:  # [batch, n_virtual, hidden]
        return None

    def adjust_input(self, layer: int, site: str, x: torch.Tensor) -> torch.Tensor:
        return x

    def adjust_output(self, layer: int, site: str, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return out

    def attention_prefix(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None

    def transform_pooled(self, pooled: torch.Tensor) -> torch.Tensor:  # [batch, hidden] -> [batch, hidden]
        return pooled


class AdapterMethod(ABC):
    """One parameter-efficient method: its config, its parameters and how they act on a batch."""

    name: ClassVar[str]
    config_class: ClassVar[type[MethodConfig]]
    default_learning_rate: ClassVar[float]
    changes_embeddings: ClassVar[bool] = False

    @property
    def position_offset(self) -> int:
        """How far the real tokens' position ids are shifted (PEFT's prefix tuning shifts them by the prefix)."""
        return 0

    @property
    def embeds_inputs(self) -> bool:
        """Whether this method must run from the token ids (its embeddings differ from the shared frozen ones)."""
        return self.changes_embeddings or self.position_offset > 0

    def __init__(self, config: MethodConfig, dims: BaseDims) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"{self.name} needs a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.dims = dims

    @property
    @abstractmethod
    def start_layer(self) -> int:
        """The first layer whose computation this method changes (``num_layers`` if it changes none).

        Everything below it is frozen and the same for every user, so it can be computed once and cached."""

    @abstractmethod
    def init_params(self, base: BaseModel, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Fresh parameters for one user, keyed by PEFT's state-dict names."""

    @abstractmethod
    def hooks(self, params: dict[str, torch.Tensor], *, training: bool) -> BatchHooks:
        """Hooks for a batch. Tensors in ``params`` either have a leading ``[batch]`` dimension (each row its own
        user's) or none (one user's, shared by every row)."""

    @property
    def pooled_width(self) -> int:
        """The width of the pooled encoding this method's forward ends in (the head's input)."""
        return self.dims.hidden_size

    def members(self, params: dict[str, torch.Tensor]) -> list[tuple[AdapterMethod, dict[str, torch.Tensor]]] | None:
        """For a method that runs as several adapters side by side (their pooled encodings concatenated): each
        one's method and parameters. ``None`` for a method that runs through its own hooks."""
        return None

    def peft_config(self) -> PeftConfig | None:
        """PEFT's config for this adapter, or ``None`` where PEFT cannot express it."""
        return None

    def family(self) -> tuple:
        """Adapters of one family have parameters of the same shapes and can be stacked in one tensor.

        Computed once per method object (a method's config is fixed once it is built): the engine asks for every
        row of every batch, and rebuilding it from the config cost about 5 us per row (1.7 ms for 128 LoRA rows)."""
        family = self.__dict__.get("_family")
        if family is None:
            config = tuple(sorted((k, repr(v)) for k, v in self.config.to_dict().items()))
            family = self._family = (self.name, config)
        return family


def per_row_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight^T (+ bias)`` where ``weight`` is shared ``[out, in]`` or per row ``[batch, out, in]``.

    ``x`` is ``[batch, in]`` or ``[batch, seq, in]``. Training one user passes shared weights: a plain matmul,
    far cheaper than a batched one over copies of the same weights."""
    if weight.dim() == 2:
        out = x @ weight.T
    elif x.dim() == 2 and x.stride(0) == 0 and weight.is_contiguous():
        # One vector for every row (a fan-out): one matrix-vector product over all rows' weights, no batching.
        out = (weight.reshape(-1, weight.shape[-1]) @ x[0]).view(weight.shape[0], weight.shape[1])
    elif x.dim() == 2 and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
        # Serving: one matrix-vector product per row reads each weight once; a batched matmul with one column
        # runs ~2.5x slower on CPU.
        out = x.new_empty(weight.shape[0], weight.shape[1])
        for row in range(weight.shape[0]):
            torch.mv(weight[row], x[row], out=out[row])
    elif x.dim() == 2:
        out = torch.bmm(weight, x.unsqueeze(-1)).squeeze(-1)
    else:
        out = torch.bmm(x, weight.transpose(1, 2))
    if bias is not None:
        out = out + (bias if bias.dim() == 1 or x.dim() == 2 else bias.unsqueeze(1))
    return out


class LayeredMethod(AdapterMethod):
    """A method that acts on a chosen set of layers (``config.layers``; None = all)."""

    def __init__(self, config: MethodConfig, dims: BaseDims) -> None:
        super().__init__(config, dims)
        self.layers = check_layers(config.layers, dims.num_layers)

    @property
    def start_layer(self) -> int:
        return self.layers[0]


def virtual_token_peft_kwargs(num_virtual_tokens: int, dims: BaseDims) -> dict[str, Any]:
    """What PEFT's prompt-learning configs need to know about the base, for a feature-extraction model."""
    return {
        "task_type": "FEATURE_EXTRACTION",
        "num_virtual_tokens": num_virtual_tokens,
        "token_dim": dims.hidden_size,
        "num_transformer_submodules": 1,
        "num_attention_heads": dims.num_heads,
        "num_layers": dims.num_layers,
    }


# -- the classification head every adapter carries ------------------------------------------------------------------
def init_head(num_labels: int, hidden_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    bound = 1.0 / math.sqrt(hidden_size)
    weight = (torch.rand(num_labels, hidden_size, generator=generator) * 2 - 1) * bound
    return {"weight": weight, "bias": torch.zeros(num_labels)}


def apply_head(pooled: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``pooled [batch, hidden]`` with a shared head (``weight [labels, hidden]``) or one per row
    (``[batch, labels, hidden]``) -> logits ``[batch, labels]``."""
    return per_row_linear(pooled, weight, bias)


# -- registry -------------------------------------------------------------------------------------------------------
_METHODS: dict[str, type[AdapterMethod]] = {}


def register_method(name: str, method: type[AdapterMethod]) -> None:
    if name in _METHODS:
        raise ValueError(f"adapter method {name!r} is already registered by {_METHODS[name].__module__}")
    if method in _METHODS.values():
        raise ValueError(f"{method.__name__} is already registered as {method.name!r}")
    method.name = name
    _METHODS[name] = method


def get_method(name: str) -> type[AdapterMethod]:
    try:
        return _METHODS[name]
    except KeyError:
        raise ValueError(f"adapter method {name!r} is not one of {available_methods()}") from None


def available_methods() -> list[str]:
    return sorted(_METHODS)


def make_method(name: str, options: dict[str, Any] | None, dims: BaseDims) -> AdapterMethod:
    method_class = get_method(name)
    config = method_class.config_class.from_dict(options)
    if hasattr(config, "validate_for"):
        config.validate_for(dims)
    return method_class(config, dims)
