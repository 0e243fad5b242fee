"""Ordered CPU kernels while training: the same labels and seed give the same adapter on every run."""
from __future__ import annotations

import threading

import pytest
import torch

from localize.activations import ActivationCache
from localize.demo_data import LABELS, demo_rows
from localize.determinism import deterministic_kernels
from localize.training import Trainer
from localize.training_args import TrainingArguments


@pytest.fixture
def two_threads():
    """The unordered kernels only race with more than one thread; CI machines have two cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_a_task_prior_trained_twice_is_the_same_to_the_last_digit(base, two_threads):
    """A task prior with annotator heads on 600 rows: its backward sums rows from two threads, which without ordered
    kernels differ in the last digits from run to run (and early stopping can turn that into another model)."""
    rows = demo_rows(n_per_user=300, seed=0)
    args = TrainingArguments(seed=0, prior_last_epoch=1).for_prior()

    def train():
        trainer = Trainer(base, args, [r["text"] for r in rows], [r["label"] for r in rows], LABELS,
                          cache=ActivationCache(max_bytes=1 << 30), annotators=[r["user"] for r in rows])
        trainer.train()
        return {**{f"params.{k}": v.clone() for k, v in trainer.params.items()},
                **{f"head.{k}": v.detach().clone() for k, v in trainer.head.items()}}

    first, again = train(), train()
    different = [name for name in first if not torch.equal(first[name], again[name])]
    assert not different, different


def test_ordered_kernels_are_on_only_inside_and_the_callers_setting_comes_back() -> None:
    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_kernels(torch.device("cpu")):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert not torch.are_deterministic_algorithms_enabled()

    torch.use_deterministic_algorithms(True)  # a caller who wants errors, not warnings, keeps them
    try:
        with deterministic_kernels(torch.device("cpu")):
            assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(False)


def test_overlapping_trainings_keep_ordered_kernels_until_the_last_one_ends() -> None:
    first_inside, second_done = threading.Event(), threading.Event()
    seen = {}

    def first() -> None:
        with deterministic_kernels(torch.device("cpu")):
            first_inside.set()
            second_done.wait(5)
            seen["after the other ended"] = torch.are_deterministic_algorithms_enabled()

    thread = threading.Thread(target=first)
    thread.start()
    first_inside.wait(5)
    with deterministic_kernels(torch.device("cpu")):
        pass
    second_done.set()
    thread.join(5)
    assert seen == {"after the other ended": True}
    assert not torch.are_deterministic_algorithms_enabled()


def test_other_devices_are_left_as_they_are() -> None:
    with deterministic_kernels(torch.device("cuda")):  # constructing the device needs no GPU
        assert not torch.are_deterministic_algorithms_enabled()
