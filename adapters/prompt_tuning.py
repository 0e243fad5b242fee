"""Prompt tuning: a few learned virtual tokens put in front of every text's input embeddings."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from localize.adapters.base import (
    AdapterMethod,
    BatchHooks,
    MethodConfig,
    register_method,
    virtual_token_peft_kwargs,
)

KEY = "prompt_embeddings"


@dataclass
class PromptTuningConfig(MethodConfig):
    num_virtual_tokens: int = field(default=8, metadata={"help": "Learned tokens put in front of each text."})

    def __post_init__(self) -> None:
        if not 1 <= self.num_virtual_tokens <= 128:
            raise ValueError(f"num_virtual_tokens={self.num_virtual_tokens} must be in 1..128")


class _PromptHooks(BatchHooks):
    def __init__(self, prompts: torch.Tensor) -> None:
        self.prompts = prompts

    def input_prompts(self):
        return self.prompts  # [batch, n_virtual, hidden]


class PromptTuningMethod(AdapterMethod):
    config_class = PromptTuningConfig
    default_learning_rate = 3e-2
    changes_embeddings = True

    @property
    def start_layer(self) -> int:
        return 0

    def init_params(self, base, generator):
        # Start from real word embeddings of random vocabulary tokens (PEFT's TEXT init, without a text):
        # random normals would sit far outside the embedding distribution.
        vocab = base.model.embeddings.word_embeddings.weight
        token_ids = torch.randint(1000, vocab.shape[0], (self.config.num_virtual_tokens,), generator=generator)
        return {KEY: vocab.detach()[token_ids].float().cpu().clone()}

    def hooks(self, params, *, training):
        return _PromptHooks(params[KEY])

    def peft_config(self):
        from peft import PromptTuningConfig as PeftPromptTuningConfig

        return PeftPromptTuningConfig(**virtual_token_peft_kwargs(self.config.num_virtual_tokens, self.dims))


register_method("prompt_tuning", PromptTuningMethod)
