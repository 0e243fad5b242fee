"""Where a head-only user's tensors start: ``head_hidden`` gives a head on the frozen base its MLP whichever method
names the head, and a linear head prior starts an MLP head (its head copied, the MLP as the identity)."""
from __future__ import annotations

import pytest
import torch

from localize.adapters.head import DOWN, UP
from localize.training import Trainer
from localize.training_args import TrainingArguments


def _rows(tiny_texts):
    texts, john, _, label_set = tiny_texts
    return texts, john, label_set


def test_head_hidden_gives_a_head_method_user_its_mlp_and_averaged_heads(base, tiny_texts) -> None:
    texts, john, label_set = _rows(tiny_texts)
    one = Trainer(base, TrainingArguments(method="head", train_scope="head", head_hidden=8, max_epochs=3),
                  texts, john, label_set).train()
    assert one.method.config.hidden == 8 and one.params[UP].shape == (8, base.dims.hidden_size)

    averaged = Trainer(base, TrainingArguments(method="head", train_scope="head", head_hidden=8, head_ensemble=3,
                                               max_epochs=3), texts, john, label_set)
    served = averaged.train()
    assert served.method.config.hidden == 24 and len(averaged.metrics["ensemble_best_epochs"]) == 3


def test_a_linear_head_prior_starts_a_users_mlp_head_from_its_own_head(base, tiny_texts) -> None:
    texts, john, label_set = _rows(tiny_texts)
    pooled = TrainingArguments(method="head", method_options={}, train_scope="head", prior_max_epochs=2)
    prior = Trainer(base, pooled.for_prior(), texts, john, label_set).train()
    assert not prior.params  # a linear head on the frozen base

    user = Trainer(base, TrainingArguments(method="head", method_options={}, train_scope="head", head_hidden=8),
                   texts, john, label_set, init=prior)
    user.prepare()
    assert user.adapter.from_prior and user.params[UP].shape[0] == 8
    assert torch.equal(user.params[DOWN], torch.zeros_like(user.params[DOWN]))  # the MLP starts as the identity
    assert torch.equal(user.head["weight"], prior.head["weight"].float())


def test_two_widths_for_one_head_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="hidden=256 and head_hidden=8 both name the head's MLP width"):
        TrainingArguments(method="head", method_options={"hidden": 256}, train_scope="head", head_hidden=8)
    TrainingArguments(method="head", method_options={"hidden": 8}, train_scope="head", head_hidden=8)  # the same
