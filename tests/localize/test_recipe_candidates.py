"""The recipes whole-task training compares: their names and arguments, the default first, and the label limit
above which the stacked priors are not tried (a setting)."""
from __future__ import annotations

import dataclasses

import pytest

from localize import recipe_candidates, recipe_choice
from localize.training_args import TrainingArguments


def test_the_candidates_are_named_and_the_default_comes_first() -> None:
    names = [c.name for c in recipe_candidates.candidate_recipes()]
    assert names == ["prior-head", "pooled-head", "prior-mlp", "prior-mlp-averaged", "prior3-head",
                     "prior3-mlp-averaged", "prior-lora"]
    for name, single in (("prior3-head", "prior-head"), ("prior3-mlp-averaged", "prior-mlp-averaged")):
        stacked = recipe_candidates.candidate_named(name).args
        assert stacked.prior_members == recipe_candidates.STACKED_PRIORS > 1
        assert dataclasses.replace(stacked, prior_members=1) == recipe_candidates.candidate_named(single).args
    assert recipe_candidates.candidate_named("prior-head").args == TrainingArguments()
    # A LoRA per user warms up, then decays: at a constant rate one in eight stalled after its first epoch.
    assert recipe_candidates.candidate_named("prior-lora").args == dataclasses.replace(
        TrainingArguments(), train_scope="all", max_epochs=8, lr_schedule="linear")
    lone, averaged = (recipe_candidates.candidate_named(name).args for name in ("prior-mlp", "prior-mlp-averaged"))
    assert (averaged.head_hidden, averaged.head_ensemble) == (recipe_candidates.MLP_HEAD_HIDDEN, recipe_candidates.MLP_HEADS)
    assert recipe_candidates.MLP_HEADS > 1 and dataclasses.replace(averaged, head_ensemble=1) == lone
    # So whole-task training scores prior-mlp from prior-mlp-averaged's first heads.
    assert recipe_choice._first_head_partners(recipe_candidates.candidate_recipes()) == {"prior-mlp": "prior-mlp-averaged"}
    with pytest.raises(ValueError, match="recipe 'best' is not one of"):
        recipe_candidates.candidate_named("best")


def test_the_stacked_candidates_row_limit_is_a_setting_that_reaches_the_choice(monkeypatch) -> None:
    from localize.settings import Settings

    md_labels = 43_014
    default = recipe_candidates.configured_candidates("prior-head,prior3-head")
    assert [c.skipped_for(md_labels) for c in default][0] is None
    assert "the setting stacked_priors_max_labels raises the limit" in default[1].skipped_for(md_labels)
    monkeypatch.setenv("LOCALIZE_STACKED_PRIORS_MAX_LABELS", "50000")
    raised = recipe_candidates.configured_candidates(None, Settings().stacked_priors_max_labels)
    assert all(c.skipped_for(md_labels) is None for c in raised)
    assert [c.name for c in raised] == [c.name for c in recipe_candidates.candidate_recipes()]
