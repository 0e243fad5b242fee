"""P-tuning v2 / prefix tuning: learned key and value prefixes in the attention of chosen layers.

Stored as PEFT stores prefix tuning, one ``[n_virtual, layers * 2 * hidden]`` table (key, value per layer).
PEFT can express it only when every layer has a prefix; top-layer-only prefixes keep the same table for
the chosen layers and a localize-only config.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from localize.adapters.base import (
    BatchHooks,
    LayeredMethod,
    MethodConfig,
    register_method,
    virtual_token_peft_kwargs,
)

KEY = "prompt_embeddings"


@dataclass
class PrefixTuningConfig(MethodConfig):
    num_virtual_tokens: int = field(default=8, metadata={"help": "Prefix length in every adapted layer."})
    layers: list[int] | None = field(default=None, metadata={"help": "Layers with a prefix; None gives all."})
    init_std: float = field(default=0.5, metadata={"help": "Std of the random initial prefixes."})

    def __post_init__(self) -> None:
        if not 1 <= self.num_virtual_tokens <= 128:
            raise ValueError(f"num_virtual_tokens={self.num_virtual_tokens} must be in 1..128")
        if self.init_std <= 0:
            raise ValueError(f"init_std={self.init_std} must be > 0")


class _PrefixHooks(BatchHooks):
    def __init__(self, method: PrefixTuningMethod, table: torch.Tensor) -> None:
        dims = method.dims
        if table.dim() == 2:  # one user's prefixes shared by every row: broadcast later, in attention
            table = table.unsqueeze(0)
        batch, n_virtual, _ = table.shape
        # [batch, n, layers*2*hidden] -> [layers*2, batch, heads, n, head_dim], PEFT's past_key_values layout
        self.kv = table.view(batch, n_virtual, len(method.layers) * 2, dims.num_heads, dims.head_dim).permute(
            2, 0, 3, 1, 4
        )
        self.slot = {layer: index for index, layer in enumerate(method.layers)}

    def attention_prefix(self, layer):
        slot = self.slot.get(layer)
        if slot is None:
            return None
        return self.kv[2 * slot], self.kv[2 * slot + 1]


class PrefixTuningMethod(LayeredMethod):
    config_class = PrefixTuningConfig
    default_learning_rate = 1e-2


    @property
    def position_offset(self) -> int:
        # Where PEFT can load the adapter (a prefix in every layer), match it: Hugging Face's BERT numbers the
        # real tokens after the prefix (positions n_virtual..). Top-layer prefixes leave the lower layers, and
        # so the positions, untouched: the frozen lower layers stay shareable across users.
        return self.config.num_virtual_tokens if len(self.layers) == self.dims.num_layers else 0

    def init_params(self, base, generator):
        width = len(self.layers) * 2 * self.dims.hidden_size
        table = torch.randn(self.config.num_virtual_tokens, width, generator=generator) * self.config.init_std
        return {KEY: table}

    def hooks(self, params, *, training):
        return _PrefixHooks(self, params[KEY])

    def peft_config(self):
        if len(self.layers) != self.dims.num_layers:
            return None
        from peft import PrefixTuningConfig as PeftPrefixTuningConfig

        return PeftPrefixTuningConfig(**virtual_token_peft_kwargs(self.config.num_virtual_tokens, self.dims))


register_method("prefix_tuning", PrefixTuningMethod)
