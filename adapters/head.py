"""Head only: the user's own classifier on the frozen base's pooled embedding, optionally with a small
residual MLP in front of the linear head.

Nothing inside the encoder changes, so the pooled embedding of a text is computed once for all users. The
default is linear (``hidden=0``): on real annotators' labels (reports/accuracy.md) a linear head started from the
task prior beats the MLP. The MLP (``hidden=256``) is for truths that are interactions (gold *and* up is good for a
gold bull, oil *and* up is bad for an oil bear, as in the demo), which no linear map of a frozen embedding can
express.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from localize.adapters.base import (
    AdapterMethod,
    BatchHooks,
    MethodConfig,
    per_row_linear,
    register_method,
)

UP, UP_BIAS, DOWN = "pooled_mlp.up.weight", "pooled_mlp.up.bias", "pooled_mlp.down.weight"


@dataclass
class HeadConfig(MethodConfig):
    hidden: int = field(default=0, metadata={"help": "Width of the residual MLP before the head; 0 (the default) for linear."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout inside the MLP while training."})
    input_width: int = field(default=0, metadata={"help": "The width of the encoding the head reads; 0 (the default) "
                                                          "for the base's hidden size. A head on several task "
                                                          "priors side by side reads their encodings concatenated."})

    def __post_init__(self) -> None:
        if not 0 <= self.hidden <= 8192:
            raise ValueError(f"head hidden={self.hidden} must be in 0..8192")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"head dropout={self.dropout} must be in [0, 1)")
        if self.input_width < 0:
            raise ValueError(f"head input_width={self.input_width} must be >= 0")


class _MlpHooks(BatchHooks):
    def __init__(self, params: dict[str, torch.Tensor], dropout: float) -> None:
        self.params, self.dropout = params, dropout

    def transform_pooled(self, pooled):
        inner = F.gelu(per_row_linear(pooled, self.params[UP], self.params[UP_BIAS]))  # [batch, mlp]
        inner = F.dropout(inner, self.dropout, self.dropout > 0)
        return pooled + per_row_linear(inner, self.params[DOWN])


class HeadMethod(AdapterMethod):
    config_class = HeadConfig
    default_learning_rate = 1e-2

    @property
    def start_layer(self) -> int:
        return self.dims.num_layers

    @property
    def pooled_width(self) -> int:
        return self.config.input_width or self.dims.hidden_size

    def init_params(self, base, generator) -> dict[str, torch.Tensor]:
        width, hidden = self.config.hidden, self.pooled_width
        if width == 0:
            return {}
        bound = 1.0 / math.sqrt(hidden)
        return {
            UP: (torch.rand(width, hidden, generator=generator) * 2 - 1) * bound,
            UP_BIAS: torch.zeros(width),
            DOWN: torch.zeros(hidden, width),  # starts as the identity: a plain linear head
        }

    def hooks(self, params, *, training: bool) -> BatchHooks:
        if not params:
            return BatchHooks()
        return _MlpHooks(params, self.config.dropout if training else 0.0)


register_method("head", HeadMethod)
