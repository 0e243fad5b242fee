"""Several MLP heads served as one: the merge is exactly their mean, and a trainer with ``head_ensemble`` serves the
mean of the heads that train alone from the same seeds."""
from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from localize.adapters.head import DOWN, UP, UP_BIAS
from localize.engine import Engine
from localize.head_ensemble import merge_mlp_heads
from localize.recipes import recipe_name
from localize.training import Trainer
from localize.training_args import TrainingArguments


def _logits(params: dict, head: dict, pooled: torch.Tensor) -> torch.Tensor:
    """A residual MLP head's logits, written out: W (x + D gelu(U x + c)) + b."""
    inner = F.gelu(pooled @ params[UP].T + params[UP_BIAS])
    return (pooled + inner @ params[DOWN].T) @ head["weight"].T + head["bias"]


def _random_head(generator: torch.Generator, labels: int = 3, hidden: int = 24, width: int = 5):
    params = {UP: torch.randn(width, hidden, generator=generator), UP_BIAS: torch.randn(width, generator=generator),
              DOWN: torch.randn(hidden, width, generator=generator)}
    return params, {"weight": torch.randn(labels, hidden, generator=generator),
                    "bias": torch.randn(labels, generator=generator)}


def test_merged_heads_give_exactly_the_mean_of_their_logits_from_one_mlp_as_wide_as_all() -> None:
    generator = torch.Generator().manual_seed(0)
    members = [_random_head(generator) for _ in range(4)]
    pooled = torch.randn(10, 24, generator=generator, dtype=torch.float32)

    params, head = merge_mlp_heads(members)

    assert params[UP].shape == (20, 24) and params[DOWN].shape == (24, 20) and head["weight"].shape == (3, 24)
    expected = torch.stack([_logits(p, h, pooled) for p, h in members]).mean(0)
    assert torch.allclose(_logits(params, head, pooled), expected, atol=1e-4)
    one = merge_mlp_heads(members[:1])  # one head merges to itself
    assert torch.allclose(_logits(*one, pooled), _logits(*members[0], pooled), atol=1e-4)


def test_heads_whose_mean_loses_a_label_cannot_merge_and_say_why() -> None:
    generator = torch.Generator().manual_seed(1)
    first, second = _random_head(generator), _random_head(generator)
    second[1]["weight"] = -first[1]["weight"]  # the mean head is all zeros: rank 0 for 3 labels
    with pytest.raises(ValueError, match="rank below its 3 labels"):
        merge_mlp_heads([first, second])
    with pytest.raises(ValueError, match="at least one head"):
        merge_mlp_heads([])


def _on_prior(base, tiny_texts, **overrides):
    texts, john, _, label_set = tiny_texts
    texts = texts + [f"Team lunch number {i} paid by the company card" for i in range(24)]
    john = john + ["work"] * 24  # enough rows that a third are held out to validate on
    args = TrainingArguments(method="lora", method_options={"layers": [-1], "r": 2}, train_scope="head",
                             prior_max_epochs=1, validation_fraction=0.3, head_hidden=8, max_epochs=4, patience=2,
                             calibrate=False, **overrides)
    prior = Trainer(base, args.for_prior(), texts, john, label_set).train()
    return texts, john, label_set, args, prior


def test_a_trainer_with_three_heads_serves_the_mean_of_the_three_trained_alone(base, tiny_texts) -> None:
    texts, john, label_set, args, prior = _on_prior(base, tiny_texts)
    ensemble = Trainer(base, dataclasses.replace(args, head_ensemble=3), texts, john, label_set, init=prior)
    served = ensemble.train()
    alone = [Trainer(base, dataclasses.replace(args, seed=args.seed + k), texts, john, label_set, init=prior)
             for k in range(3)]
    for trainer in alone:
        trainer.train()

    sample = texts[:12]
    expected = torch.stack([trainer.predict_logits(sample) for trainer in alone]).mean(0)
    assert torch.allclose(ensemble.predict_logits(sample), expected, atol=1e-4)
    # One MLP three times as wide, which the engine serves as it trained.
    assert served.params[UP].shape[0] == 3 * 8 and served.method.config.hidden == 24
    predictions = Engine(base).predict([(served, text) for text in sample])
    for prediction, probabilities in zip(predictions, ensemble.predict_proba(sample)):
        assert [prediction.probabilities[label] for label in label_set] == pytest.approx(probabilities.tolist(),
                                                                                          abs=1e-4)
    # Each head's own best epoch is recorded; the validation figures are the served model's.
    assert ensemble.metrics["ensemble_best_epochs"] == [trainer.metrics["best_epoch"] for trainer in alone]
    assert ensemble.metrics["best_epoch"] == alone[0].metrics["best_epoch"]
    assert ensemble.metrics["val_rows"] > 0 and 0.0 <= ensemble.metrics["val_accuracy"] <= 1.0


def test_the_first_of_several_heads_serves_alone_what_one_head_of_its_seed_serves(base, tiny_texts) -> None:
    texts, john, label_set, args, prior = _on_prior(base, tiny_texts)
    args = dataclasses.replace(args, calibrate=True)  # the lone head is calibrated on the same validation rows
    ensemble = Trainer(base, dataclasses.replace(args, head_ensemble=3), texts, john, label_set, init=prior)
    ensemble.train()
    alone = Trainer(base, args, texts, john, label_set, init=prior)
    alone.train()
    assert alone.temperature != 1.0  # so the comparison covers calibration

    sample = texts[:12]
    logits, share = ensemble.first_head_logits(sample)
    assert torch.allclose(logits, alone.predict_logits(sample), atol=1e-4)
    assert share == pytest.approx(alone.uniform_share)
    assert not torch.allclose(ensemble.predict_logits(sample), logits, atol=1e-3)  # the average is another model
    with pytest.raises(ValueError, match="needs a trainer of several heads"):
        alone.first_head_logits(sample)


def test_a_refit_ensemble_refits_every_head_then_serves_their_mean(base, tiny_texts) -> None:
    texts, john, label_set, args, prior = _on_prior(base, tiny_texts, refit_on_all=True)
    ensemble = Trainer(base, dataclasses.replace(args, head_ensemble=2), texts, john, label_set, init=prior)
    ensemble.train()
    alone = [Trainer(base, dataclasses.replace(args, seed=args.seed + k), texts, john, label_set, init=prior)
             for k in range(2)]
    for trainer in alone:
        trainer.train()
    assert ensemble.metrics["refit_rows"] == len(texts)
    assert ensemble.metrics["refit_epochs"] == [trainer.metrics["refit_epochs"] for trainer in alone]  # each head's
    with pytest.raises(ValueError, match="not refitted"):  # the lone head was calibrated before its refit
        ensemble.first_head_logits(texts[:8])
    expected = torch.stack([trainer.predict_logits(texts[:8]) for trainer in alone]).mean(0)
    assert torch.allclose(ensemble.predict_logits(texts[:8]), expected, atol=1e-4)


@pytest.mark.parametrize(("overrides", "match"), [
    ({"head_ensemble": 0}, "head_ensemble=0 must be in 1..16"),
    ({"head_ensemble": 17, "head_hidden": 8, "train_scope": "head"}, "head_ensemble=17 must be in 1..16"),
    ({"head_ensemble": 3, "train_scope": "head"}, "needs train_scope='head' and head_hidden > 0"),
    ({"head_ensemble": 3, "head_hidden": 8}, "got train_scope='all'"),
])
def test_head_ensemble_is_checked_and_the_check_names_what_is_wrong(overrides, match) -> None:
    with pytest.raises(ValueError, match=match):
        TrainingArguments(**{"train_scope": "all", **overrides})


def test_the_recipe_name_says_how_many_heads_are_averaged_and_a_prior_trains_one() -> None:
    args = TrainingArguments(train_scope="head", head_hidden=256, head_ensemble=5)
    assert recipe_name(args.to_dict()) == "prior-mlp (5 heads averaged)"
    assert recipe_name(dataclasses.replace(args, head_ensemble=1).to_dict()) == "prior-mlp"
    assert args.for_prior().head_ensemble == 1
