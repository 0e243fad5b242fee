"""Epochs of gradient steps (``localize.epoch_loop``): the learning-rate schedule, where a run stops, and how
durations read in progress messages (the precision each step runs in: test_training.py)."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from localize.adapters import get_method

from localize.epoch_loop import EpochLoop, format_duration, learning_rate, learning_rate_schedule
from localize.training import Trainer
from localize.training_args import TrainingArguments


def _linear_head_options() -> dict:
    """Options for a plain linear head (no MLP, no dropout inside), whatever the head config offers."""
    fields = {f.name for f in dataclasses.fields(get_method("head").config_class)}
    return {"hidden": 0} if "hidden" in fields else {}


@pytest.mark.parametrize(("seconds", "said"), [(0.4, "0 s"), (42, "42 s"), (185, "3 min 05 s"), (3725, "1 h 02 min")])
def test_durations_read_as_a_person_says_them(seconds, said):
    assert format_duration(seconds) == said


# -- schedules and stopping -------------------------------------------------------------------------------------------
def test_a_linear_schedule_warms_up_then_decays_to_zero(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    trainer = Trainer(base, TrainingArguments(method="head", lr_schedule="linear", max_epochs=10, batch_size=4),
                      texts, john, label_set)
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=1.0)
    # 5 steps an epoch, 50 in all, 3 of warm-up
    scheduler = learning_rate_schedule(optimizer, trainer.args, rows=20)
    rates = []
    for _ in range(50):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[2:], rates[3:])) and rates[-1] < 0.05
    assert optimizer.param_groups[0]["lr"] == 0.0
    assert learning_rate_schedule(optimizer, trainer.args, rows=20) is not None
    assert learning_rate_schedule(optimizer, Trainer(base, TrainingArguments(method="head"), texts, john,
                                                     label_set).args, 20) is None


def test_a_last_epoch_stops_the_run_where_a_longer_schedule_would_be(base, tiny_texts, monkeypatch):
    """A prior trained again after the recipe choice stops at the epoch the choice found best: the schedule still
    spans the prior's epoch cap, so its learning rate there is a longer run's (not decayed to zero)."""
    texts, john, jane, label_set = tiny_texts
    args = TrainingArguments(method="head", method_options=_linear_head_options(), prior_max_epochs=6,
                             prior_patience=6, prior_last_epoch=2, lr_schedule="linear", batch_size=8,
                             validation_fraction=0.25).for_prior()
    assert (args.max_epochs, args.last_epoch, args.patience) == (6, 2, 6)
    rates: list[float] = []
    original = EpochLoop._epoch

    def epoch(self, split, optimizer, *rest, **options):  # noqa: ANN001, ANN202
        loss = original(self, split, optimizer, *rest, **options)
        rates.append(optimizer.param_groups[0]["lr"])
        return loss

    monkeypatch.setattr(EpochLoop, "_epoch", epoch)
    heard: list[str] = []
    trainer = Trainer(base, args, texts + texts, john + jane, label_set, annotators=["john"] * 24 + ["jane"] * 24,
                      progress=lambda fraction, message: heard.append(message))
    trainer.train()
    assert len(trainer.history) == 2 and trainer.metrics["best_epoch"] in (1, 2)
    assert [m.split(":")[0] for m in heard if m.startswith("epoch")] == ["epoch 1/2", "epoch 2/2"]
    # Two sixths of a linear decay: about two thirds left.
    assert rates[-1] > 0.5 * learning_rate(trainer.args, trainer.adapter.method)
    # Without it, the same run goes on (its patience spans every epoch).
    full = Trainer(base, dataclasses.replace(args, last_epoch=None), texts + texts, john + jane, label_set,
                   annotators=["john"] * 24 + ["jane"] * 24)
    full.train()
    assert len(full.history) == 6


def test_stopping_on_loss_keeps_the_epoch_with_the_lowest_validation_loss(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    args = TrainingArguments(method="head", method_options=_linear_head_options(), max_epochs=12, patience=12,
                             learning_rate=0.3, early_stopping="loss", validation_split="stratified",
                             validation_fraction=0.25, head_fit="epochs")
    trainer = Trainer(base, args, texts, john, label_set)
    trainer.train()
    losses = [record["val_loss"] for record in trainer.history]
    assert trainer.metrics["best_epoch"] == 1 + losses.index(min(losses))
    assert trainer.metrics["val_loss"] == pytest.approx(min(losses), abs=1e-6)
