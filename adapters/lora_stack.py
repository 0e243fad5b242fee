"""Several LoRA adapters side by side: each runs the base's adapted layers on its own, and their pooled encodings are
concatenated (``members`` times the hidden size).

This is how a task serves several task priors trained from different seeds. A prior trained on a few thousand labels
moves with its seed (its LoRA's starting weights, dropout, the order of its batches), and every user's head reads
it; a user's head on the priors' encodings side by side, whose blocks are the heads the user would get on each prior
divided by their number, answers with the mean of those heads' logits, which removes much of one seed's luck. It
costs the adapted layers once per member at serving (the frozen layers below still run once). Averaging the priors'
weights instead costs nothing at serving but gained nothing where it was measured (reports/findings.md, round 19).

Parameters are the members' LoRA tensors under ``members.<k>.``; the engine and the trainers run the members through
:meth:`LoraStackMethod.members`, never through hooks of their own.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch
from localize.adapters.base import AdapterMethod, register_method
from localize.adapters.lora import LoraConfig, LoraMethod

MAX_MEMBERS = 8


@dataclass
class LoraStackConfig(LoraConfig):
    members: int = field(default=2, metadata={"help": f"How many LoRA adapters side by side (2..{MAX_MEMBERS})."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.members <= MAX_MEMBERS:
            raise ValueError(f"a LoRA stack has 2..{MAX_MEMBERS} members, not members={self.members}")

    def member_config(self) -> LoraConfig:
        return LoraConfig(**{f.name: getattr(self, f.name) for f in fields(LoraConfig)})


def member_prefix(index: int) -> str:
    return f"members.{index}."


class LoraStackMethod(AdapterMethod):
    config_class = LoraStackConfig

    def __init__(self, config, dims):
        super().__init__(config, dims)
        self.member = LoraMethod(config.member_config(), dims)
        self.default_learning_rate = self.member.default_learning_rate

    @property
    def start_layer(self) -> int:
        return self.member.start_layer

    @property
    def pooled_width(self) -> int:
        return self.config.members * self.dims.hidden_size

    def members(self, params: dict[str, torch.Tensor]) -> list[tuple[AdapterMethod, dict[str, torch.Tensor]]]:
        """Each member's method and parameters, in order (tensors keep a leading batch dimension if they have one)."""
        parts = []
        for index in range(self.config.members):
            prefix = member_prefix(index)
            parts.append((self.member, {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}))
        return parts

    def init_params(self, base, generator):
        return {member_prefix(index) + key: value for index in range(self.config.members)
                for key, value in self.member.init_params(base, generator).items()}

    def combine(self, members: Sequence[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]],
                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The stack's parameters and head from its trained members' ``(params, head)``: their heads side by side,
        each divided by their number, with their biases averaged, give the mean of the members' logits."""
        if len(members) != self.config.members:
            raise ValueError(f"a stack of {self.config.members} takes {self.config.members} members, "
                             f"not {len(members)}")
        params = {member_prefix(index) + key: value for index, (member, _) in enumerate(members)
                  for key, value in member.items()}
        heads = [head for _, head in members]
        head = {"weight": torch.cat([h["weight"] for h in heads], dim=1) / len(heads),
                "bias": torch.stack([h["bias"] for h in heads]).mean(0)}
        return params, head

    def hooks(self, params, *, training):
        raise TypeError("a LoRA stack runs as its members (AdapterMethod.members), not through hooks of its own")


register_method("lora_stack", LoraStackMethod)
