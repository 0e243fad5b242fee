"""IA3: learned vectors that rescale keys, values and the feed-forward activations.

PEFT's convention: a feed-forward site (``output``) scales its input ``[1, in]``; other sites scale their
output ``[out, 1]``. Vectors start at one, so a fresh adapter leaves the base unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from localize.adapters.base import (
    SITE_MODULES,
    BatchHooks,
    LayeredMethod,
    MethodConfig,
    peft_key,
    peft_target_regex,
    register_method,
)

FEEDFORWARD_SITES = ("output",)


@dataclass
class IA3Config(MethodConfig):
    sites: list[str] = field(
        default_factory=lambda: ["key", "value", "output"],
        metadata={"help": f"Maps to rescale, of {list(SITE_MODULES)}; 'output' scales the feed-forward input."},
    )
    layers: list[int] | None = field(default=None, metadata={"help": "Layers to adapt; None adapts all."})

    def __post_init__(self) -> None:
        bad = [site for site in self.sites if site not in SITE_MODULES]
        if bad or not self.sites:
            raise ValueError(f"IA3 sites {self.sites} must be a non-empty subset of {list(SITE_MODULES)}")


class _IA3Hooks(BatchHooks):
    def __init__(self, method: IA3Method, params: dict[str, torch.Tensor]) -> None:
        self.method, self.params = method, params

    def _vector(self, layer: int, site: str) -> torch.Tensor | None:
        if layer not in self.method.layers or site not in self.method.config.sites:
            return None
        return self.params[peft_key(layer, site, "ia3_l")]

    def adjust_input(self, layer, site, x):
        if site not in FEEDFORWARD_SITES or (vector := self._vector(layer, site)) is None:
            return x
        return x * vector  # vector [(batch,) 1, in] broadcasts over the sequence

    def adjust_output(self, layer, site, x, out):
        if site in FEEDFORWARD_SITES or (vector := self._vector(layer, site)) is None:
            return out
        return out * vector.transpose(-1, -2)  # [(batch,) out, 1] -> [(batch,) 1, out]


class IA3Method(LayeredMethod):
    config_class = IA3Config
    default_learning_rate = 1e-2


    def init_params(self, base, generator):
        params = {}
        for layer in self.layers:
            for site in self.config.sites:
                if site in FEEDFORWARD_SITES:
                    width = self.dims.intermediate_size if site == "output" else self.dims.hidden_size
                    params[peft_key(layer, site, "ia3_l")] = torch.ones(1, width)
                else:
                    width = self.dims.intermediate_size if site == "intermediate" else self.dims.hidden_size
                    params[peft_key(layer, site, "ia3_l")] = torch.ones(width, 1)
        return params

    def hooks(self, params, *, training):
        return _IA3Hooks(self, params)

    def peft_config(self):
        from peft import IA3Config as PeftIA3Config

        feedforward = [site for site in self.config.sites if site in FEEDFORWARD_SITES]
        return PeftIA3Config(
            target_modules=peft_target_regex(self.layers, self.config.sites),
            feedforward_modules=peft_target_regex(self.layers, feedforward) if feedforward else [],
        )


register_method("ia3", IA3Method)
