"""LoRA: a low-rank update ``x A^T B^T * alpha / r`` added to chosen linear maps of chosen layers.

In a mixed batch each row gathers its own user's ``A`` and ``B`` and the update is a batched matmul.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from localize.adapters.base import (
    SITE_MODULES,
    BatchHooks,
    LayeredMethod,
    MethodConfig,
    peft_key,
    peft_target_regex,
    per_row_linear,
    register_method,
)
from localize.adapters.dropout import dropout as fast_dropout


@dataclass
class LoraConfig(MethodConfig):
    r: int = field(default=8, metadata={"help": "Rank of the update."})
    alpha: float = field(default=16.0, metadata={"help": "Scale numerator: the update is multiplied by alpha / r."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on the update's input while training."})
    sites: list[str] = field(
        default_factory=lambda: ["query", "value"], metadata={"help": f"Linear maps to adapt, of {list(SITE_MODULES)}."}
    )
    layers: list[int] | None = field(
        default=None, metadata={"help": "Layers to adapt (negative counts from the top); None adapts all."}
    )

    def __post_init__(self) -> None:
        if self.r < 1:
            raise ValueError(f"LoRA rank r={self.r} must be >= 1")
        if self.alpha <= 0:
            raise ValueError(f"LoRA alpha={self.alpha} must be > 0")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"LoRA dropout={self.dropout} must be in [0, 1)")
        bad = [site for site in self.sites if site not in SITE_MODULES]
        if bad or not self.sites:
            raise ValueError(f"LoRA sites {self.sites} must be a non-empty subset of {list(SITE_MODULES)}")


class _LoraHooks(BatchHooks):
    def __init__(self, method: LoraMethod, params: dict[str, torch.Tensor], training: bool) -> None:
        self.method, self.params, self.training = method, params, training

    def adjust_output(self, layer, site, x, out):
        if layer not in self.method.layers or site not in self.method.config.sites:
            return out
        a = self.params[peft_key(layer, site, "lora_A.weight")]  # [(batch,) r, in]
        b = self.params[peft_key(layer, site, "lora_B.weight")]  # [(batch,) out, r]
        dropout = self.method.config.dropout if self.training else 0.0
        inner = per_row_linear(fast_dropout(x, dropout, self.training), a)  # [batch, seq, r]
        return out + per_row_linear(inner, b) * self.method.scale


class LoraMethod(LayeredMethod):
    config_class = LoraConfig
    default_learning_rate = 2e-3

    def __init__(self, config, dims):
        super().__init__(config, dims)
        self.scale = config.alpha / config.r

    def _shape(self, site: str) -> tuple[int, int]:
        inner = self.dims.intermediate_size
        hidden = self.dims.hidden_size
        return {"intermediate": (hidden, inner), "output": (inner, hidden)}.get(site, (hidden, hidden))

    def init_params(self, base, generator):
        params = {}
        for layer in self.layers:
            for site in self.config.sites:
                fan_in, fan_out = self._shape(site)
                bound = 1.0 / math.sqrt(fan_in)  # PEFT's default: kaiming-uniform A, zero B
                a = (torch.rand(self.config.r, fan_in, generator=generator) * 2 - 1) * bound
                params[peft_key(layer, site, "lora_A.weight")] = a
                params[peft_key(layer, site, "lora_B.weight")] = torch.zeros(fan_out, self.config.r)
        return params

    def hooks(self, params, *, training):
        return _LoraHooks(self, params, training)

    def peft_config(self):
        from peft import LoraConfig as PeftLoraConfig

        return PeftLoraConfig(
            r=self.config.r,
            lora_alpha=self.config.alpha,
            lora_dropout=self.config.dropout,
            target_modules=peft_target_regex(self.layers, self.config.sites),
        )


register_method("lora", LoraMethod)
