"""The evaluation harness's task priors: trained once per set of arguments on the pooled train rows, and priors side
by side start from the lone prior of their first seed, their cost counting it; a prior reports its epochs."""
from __future__ import annotations

import dataclasses

import torch

from localize.evaluation import harness as harness_module
from localize.evaluation.data import EvalData
from localize.evaluation.harness import Harness
from localize.labels_io import LabelRow
from localize.training_args import TrainingArguments

LONE = TrainingArguments(method="lora", method_options={"layers": [-1], "r": 2}, train_scope="head",
                         prior_max_epochs=1)


def _data(tiny_texts) -> EvalData:
    texts, john, jane, label_set = tiny_texts
    train = [LabelRow(i, user, t, label) for user, labels in (("john", john), ("jane", jane))
             for i, (t, label) in enumerate(zip(texts[:18], labels[:18]))]
    test = [LabelRow(i, user, t, label) for user, labels in (("john", john), ("jane", jane))
            for i, (t, label) in enumerate(zip(texts[18:], labels[18:]))]
    return EvalData("tiny", train, test, label_set, ["jane", "john"])


def test_priors_side_by_side_start_from_the_lone_prior_and_count_its_seconds(base, tiny_texts, monkeypatch):
    fits: list[str] = []

    class Counting(harness_module.Trainer):
        def fit(self) -> None:
            fits.append(self.args.method)
            super().fit()

    monkeypatch.setattr(harness_module, "Trainer", Counting)
    heard: list[str] = []
    harness = Harness(_data(tiny_texts), base, progress=heard.append)
    lone, lone_seconds = harness.prior(LONE)
    assert harness.prior(LONE) == (lone, lone_seconds) and fits == ["lora"]  # cached
    assert any(m.startswith("task prior: epoch 1/1") for m in heard)  # a long prior shows how far it is
    stack, stack_seconds = harness.prior(dataclasses.replace(LONE, prior_members=2))
    assert fits == ["lora", "lora_stack", "lora"]  # the stack, then only its second member
    assert stack_seconds > lone_seconds
    first, _ = stack.members()
    for key, value in lone.params.items():
        assert torch.equal(first.params[key], value), key


def test_a_recipe_on_a_prior_encodes_every_users_texts_once_before_their_fits(base, tiny_texts, monkeypatch):
    from localize.evaluation.harness import Recipe

    data = _data(tiny_texts)
    harness = Harness(data, base, progress=lambda message: None)
    calls: list[tuple[list[str], int]] = []  # each call's texts and how many of them were not cached yet
    encoded = harness.cache.encoded

    def recording(base_model, encoder, texts, *args, **kwargs):
        before = harness.cache.misses
        found = encoded(base_model, encoder, texts, *args, **kwargs)
        calls.append((list(texts), harness.cache.misses - before))
        return found

    monkeypatch.setattr(harness.cache, "encoded", recording)
    result = harness.run_recipe(Recipe("prior-head", LONE))
    train_texts = {r.text for r in data.train}
    # First every user's train texts in one call, as whole-task training encodes them before the users' jobs ...
    assert calls[0] == (sorted(train_texts), len(train_texts))
    # ... so each user's fit finds its texts cached and encodes none of them again.
    users_fits = [missed for texts, missed in calls[1:] if set(texts) <= train_texts]
    assert len(users_fits) >= 2 and not any(users_fits)
    assert len(result.users) == 2
