"""Head only: the user's own classification head on the frozen base's pooled embedding.

Nothing inside the encoder changes, so the pooled embedding of a text is computed once for all users.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from localize.adapters.base import AdapterMethod, BatchHooks, MethodConfig, register_method


@dataclass
class HeadConfig(MethodConfig):
    pass


class HeadMethod(AdapterMethod):
    config_class = HeadConfig
    default_learning_rate = 1e-2

    @property
    def start_layer(self) -> int:
        return self.dims.num_layers

    def init_params(self, base, generator) -> dict[str, torch.Tensor]:
        return {}

    def hooks(self, params, *, training: bool) -> BatchHooks:
        return BatchHooks()


register_method("head", HeadMethod)
