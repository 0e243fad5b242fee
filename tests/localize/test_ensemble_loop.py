"""Several MLP heads in one epoch loop: each trains, stops and refits as it would alone (to rounding), and the
batched pieces (dropout draws, the weighted loss over padded batches) equal what a lone head computes."""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch
import torch.nn.functional as F

from localize.ensemble_loop import _dropout_masks, _weighted_cross_entropy
from localize.training import Trainer
from localize.training_args import TrainingArguments


def test_dropout_masks_are_the_draws_f_dropout_makes_from_each_heads_seed() -> None:
    batches = [list(range(5)), list(range(3))]  # the second head's batch is shorter: padded with ones
    masks = _dropout_masks(batches, [torch.Generator().manual_seed(seed) for seed in (7, 8)], 0.1, 6, 5,
                           torch.device("cpu"))
    for k, (seed, batch) in enumerate(zip((7, 8), batches)):
        torch.manual_seed(seed)
        ones = torch.ones(len(batch), 6)
        assert torch.equal(masks[k, : len(batch)], F.dropout(ones, 0.1, True))
    assert torch.equal(masks[1, 3:], torch.full((2, 6), 1 / 0.9))  # padding rows: no draw
    assert _dropout_masks(batches, [], 0.0, 6, 5, torch.device("cpu")) is None  # p = 0 draws nothing


def test_the_loss_of_padded_batches_is_each_heads_weighted_cross_entropy() -> None:
    generator = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(2, 4, 3, generator=generator), torch.tensor([[0, 2, 1, 1], [2, 0, 0, 0]])
    valid = torch.tensor([[True, True, True, True], [True, True, False, False]])
    weights = torch.tensor([0.5, 1.0, 2.0])

    losses = _weighted_cross_entropy(logits, targets, valid, weights)

    expected = [F.cross_entropy(logits[0], targets[0], weight=weights),
                F.cross_entropy(logits[1, :2], targets[1, :2], weight=weights)]
    assert losses.tolist() == pytest.approx([float(e) for e in expected], rel=1e-6)
    unweighted = _weighted_cross_entropy(logits, targets, valid, None)
    assert float(unweighted[1]) == pytest.approx(float(F.cross_entropy(logits[1, :2], targets[1, :2])), rel=1e-6)


def test_heads_that_stop_at_different_epochs_each_train_and_refit_as_they_would_alone(base, tiny_texts) -> None:
    """One loop trains all heads: a head that stops early keeps its best epoch while the others go on, and its refit
    runs its own number of epochs, its batch order and dropout continuing as a lone head's would."""
    texts, john, _, label_set = tiny_texts
    texts = texts + [f"Team lunch number {i} paid by the company card" for i in range(24)]
    texts += [f"Coffee with friend number {i}" for i in range(24)]
    flip = {"work": "personal", "personal": "work"}
    noise = random.Random(0)  # a fifth of the labels flipped: validation scores that move from epoch to epoch
    john = [flip[label] if noise.random() < 0.2 else label for label in john + ["work"] * 24 + ["personal"] * 24]
    args = TrainingArguments(train_scope="head", head_hidden=8, validation_fraction=0.3, max_epochs=12, patience=2,
                             calibrate=False, refit_on_all=True)
    ensemble = Trainer(base, dataclasses.replace(args, head_ensemble=4), texts, john, label_set)
    ensemble.train()
    alone = [Trainer(base, dataclasses.replace(args, seed=args.seed + k), texts, john, label_set) for k in range(4)]
    for trainer in alone:
        trainer.train()

    best_epochs = [trainer.metrics["best_epoch"] for trainer in alone]
    assert len(set(best_epochs)) > 1  # the case under test: the heads stop at different epochs
    assert ensemble.metrics["ensemble_best_epochs"] == best_epochs
    assert ensemble.metrics["refit_epochs"] == best_epochs
    assert len(ensemble.history) == len(alone[0].history)  # the first head's records, to rounding
    for ours, theirs in zip(ensemble.history, alone[0].history):
        assert ours == pytest.approx(theirs, rel=1e-5)
    expected = torch.stack([trainer.predict_logits(texts[:10]) for trainer in alone]).mean(0)
    assert torch.allclose(ensemble.predict_logits(texts[:10]), expected, atol=1e-4)
