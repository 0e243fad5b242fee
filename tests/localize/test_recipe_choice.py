"""Choosing a task's recipe: no candidate is scored on a row any of its trainers (its task prior included) saw,
small tasks use folds by text and large ones one held-out share, the better candidate wins whatever the order,
the winner's prior trained again stops where the choice's priors did, and a per-user encoder that would take too
long is skipped with the reason."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from services.support import JANE_LABELS, JOHN_LABELS, LABELS, TEXTS

from localize import recipe_choice
from localize.recipe_candidates import Candidate
from localize.recipe_choice import Row, choice_fold, choose_recipe
from localize.training import Trainer
from localize.training_args import TrainingArguments

POOLED = Candidate("pooled-head", TrainingArguments(method="head", method_options={}, train_scope="head",
                                                    prior_max_epochs=5, head_prior_strength=0.1),
                   "MAP heads, pulled lightly toward a pooled head")
# Held at the pooled head, which follows the majority: Jane, who labels the other way, is always wrong. It must lose.
MUTE = Candidate("mute-head", TrainingArguments(method="head", method_options={}, train_scope="head",
                                                prior_max_epochs=5, head_prior_strength=1e6),
                 "heads held at the pooled head")


def _rows() -> list[Row]:
    """John and two others file the notes one way, Jane the other way."""
    return ([Row(user, t, label) for user in ("john", "ann", "bob") for t, label in zip(TEXTS, JOHN_LABELS)]
            + [Row("jane", t, label) for t, label in zip(TEXTS, JANE_LABELS)])


@pytest.fixture
def trainers(monkeypatch) -> list[dict]:
    """Every trainer the choice builds: the texts it trained on and the texts it was asked to predict."""
    made: list[dict] = []

    class Spy(Trainer):
        def __init__(self, base, args, texts, *rest, **options):  # noqa: ANN001
            super().__init__(base, args, texts, *rest, **options)
            made.append({"trained": set(texts), "predicted": set(), "prior": options.get("annotators") is not None})
            self._log = made[-1]

        def train(self):  # noqa: ANN201
            weights = super().train()
            self._log["best_epoch"] = self.metrics["best_epoch"]
            return weights

        def predict_logits(self, texts):  # noqa: ANN001, ANN201
            self._log["predicted"] |= set(texts)
            return super().predict_logits(texts)

    monkeypatch.setattr(recipe_choice, "Trainer", Spy)
    return made


def test_a_small_task_is_scored_on_every_row_by_folds_no_trainer_saw(base, trainers) -> None:
    choice = choose_recipe(base, _rows(), LABELS, candidates=[MUTE, POOLED])
    assert choice.folds == recipe_choice.FOLDS == 3
    assert choice.validation_rows == 4 * len(TEXTS) and choice.validation_texts == len(TEXTS)
    assert choice.winner == "pooled-head"  # listed second: order does not decide
    folds = recipe_choice.FOLDS
    for trainer in trainers:
        missing = set(range(folds)) - {choice_fold(t, folds) for t in trainer["trained"]}
        assert len(missing) == 1, "a trainer (a prior included) saw rows of every fold"
        if trainer["predicted"]:
            assert {choice_fold(t, folds) for t in trainer["predicted"]} == missing
    assert any(t["prior"] for t in trainers)  # the pooled head's prior trained, on every fold but one
    pooled, mute = (next(c for c in choice.candidates if c.name == name) for name in ("pooled-head", "mute-head"))
    assert pooled.score > mute.score and pooled.users == mute.users == 4
    assert mute.per_user["jane"][0] < 0.5 <= pooled.per_user["jane"][0]
    assert len(pooled.fold_scores) == folds and len(choice.fold_winners) == folds
    assert sum(choice.bootstrap_wins.values()) == pytest.approx(1.0)
    # Priors this small hold no validation rows, so none found a best epoch: trained again, the prior runs its
    # whole schedule.
    assert [t["best_epoch"] for t in trainers if t["prior"]] == [None] * folds and pooled.prior_last_epoch is None
    assert any(t["predicted"] for t in trainers)
    record = choice.to_dict()
    assert record["recipe"] == "pooled-head"
    assert record["args"] == dataclasses.replace(POOLED.args, temperature_scale=pooled.temperature_scale,
                                                 added_uniform_share=pooled.added_uniform_share,
                                                 decision_offsets=pooled.decision_offsets or None).to_dict()


def test_the_winners_recipe_carries_the_calibration_correction_fitted_on_its_held_out_rows(base, monkeypatch) -> None:
    """Each candidate's users are calibrated as in production; one correction (a factor on their temperatures, a
    share added to theirs) is fitted on the held-out rows they never saw, stored with the candidate (with ECE
    before and after) and in the winner's args."""
    seen: list[tuple] = []
    real_fit = recipe_choice.fit_calibration_correction

    def spy(logits, shares, targets):  # noqa: ANN001, ANN202
        seen.append((sum(len(t) for t in targets), len(logits)))
        return real_fit(logits, shares, targets)

    monkeypatch.setattr(recipe_choice, "fit_calibration_correction", spy)
    validated = Candidate("pooled-head", dataclasses.replace(POOLED.args, validation_fraction=0.4), "validated")
    uncalibrated = Candidate("uncalibrated", dataclasses.replace(MUTE.args, calibrate=False), "no calibration")
    choice = choose_recipe(base, _rows(), LABELS, candidates=[validated, uncalibrated])
    pooled, plain = (next(c for c in choice.candidates if c.name == n) for n in ("pooled-head", "uncalibrated"))
    assert seen == [(4 * len(TEXTS), 4 * recipe_choice.FOLDS)]  # every held-out row of every user and fold, once
    assert 0.25 <= pooled.temperature_scale <= 4.0 and pooled.held_out_ece is not None
    assert pooled.held_out_ece_corrected <= pooled.held_out_ece + 0.05
    assert 0.0 <= pooled.added_uniform_share < 0.5
    assert plain.temperature_scale == 1.0 and plain.held_out_ece is None  # nothing calibrated: nothing to correct
    assert choice.winner == "pooled-head" and choice.winner_args.temperature_scale == pooled.temperature_scale
    assert choice.winner_args.added_uniform_share == pooled.added_uniform_share
    assert choice.to_dict()["candidates"][0]["temperature_scale"] == pooled.temperature_scale


def test_a_large_task_holds_out_a_fifth_of_its_texts_and_notes_where_its_prior_stopped(base, trainers,
                                                                                        monkeypatch) -> None:
    monkeypatch.setattr(recipe_choice, "SMALL_TASK_TEXTS", 10)
    validated = Candidate("pooled-head", dataclasses.replace(POOLED.args, validation_fraction=0.4), "validated")
    choice = choose_recipe(base, _rows(), LABELS, candidates=[validated, MUTE])
    held = {t for t in TEXTS if choice_fold(t, 5) == 0}
    assert choice.folds == 1 and choice.validation_texts == len(held) > 0
    assert choice.validation_rows == 4 * len(held)
    for trainer in trainers:
        assert not trainer["trained"] & held
        assert trainer["predicted"] <= held
    # The winner's prior, trained again on every text, stops at the epoch the choice's prior found best.
    [prior] = [t for t in trainers if t["prior"] and t["best_epoch"] is not None]
    assert choice.winner == "pooled-head" and choice.winner_args.prior_last_epoch == prior["best_epoch"]
    assert 1 <= prior["best_epoch"] <= POOLED.args.prior_max_epochs


def test_a_per_user_encoder_over_the_time_budget_is_skipped_with_the_reason(base, monkeypatch) -> None:
    monkeypatch.setattr(recipe_choice, "ENCODER_SECONDS_BUDGET", 0.0)
    slow = Candidate("slow", POOLED.args, "stands in for per-user LoRA", per_user_encoder=True)
    choice = choose_recipe(base, _rows(), LABELS, candidates=[slow, MUTE])
    skipped = next(c for c in choice.candidates if c.name == "slow")
    assert skipped.skipped.startswith("its first user's fit took") and "over the budget of 0 min" in skipped.skipped
    assert skipped.score is None and choice.winner == "mute-head" and choice.fold_winners == ["mute-head"] * 3


def test_stacked_priors_are_scored_on_a_small_task_and_skipped_over_their_row_limit(base, trainers) -> None:
    args = TrainingArguments(method="lora", method_options={"layers": [-1], "r": 2}, train_scope="head",
                             prior_max_epochs=1, prior_members=2)
    stacked = Candidate("stacked", args, "two tiny LoRA priors side by side", max_rows=len(_rows()))
    too_big = Candidate("too-big", dataclasses.replace(args, head_prior_strength=1.0), "the same, capped lower",
                        max_rows=len(_rows()) - 1)
    choice = choose_recipe(base, _rows(), LABELS, candidates=[stacked, too_big])
    scored, skipped = choice.candidates
    assert scored.score is not None and len(scored.fold_scores) == 3
    assert skipped.score is None and skipped.skipped.startswith(f"the task has {len(_rows())} labels; 2 priors")
    # Per fold one stack of two priors (each member a trainer of its own), none for the skipped candidate.
    assert len([t for t in trainers if t["prior"]]) == 3 * (1 + 2)


def test_a_stack_of_priors_starts_from_the_lone_prior_of_its_first_seed_and_scores_as_without_it(
        base, trainers) -> None:
    args = TrainingArguments(method="lora", method_options={"layers": [-1], "r": 2}, train_scope="head",
                             prior_max_epochs=1)
    lone = Candidate("lone", args, "one tiny LoRA prior")
    stacked = Candidate("stacked", dataclasses.replace(args, prior_members=2), "two side by side")
    choice = choose_recipe(base, _rows(), LABELS, candidates=[lone, stacked])
    # Per fold: the lone prior, then the stack and its second member only (its first is the lone prior).
    assert len([t for t in trainers if t["prior"]]) == 3 * (1 + 1 + 1)
    trainers.clear()
    stack_alone = choose_recipe(base, _rows(), LABELS, candidates=[stacked])
    assert len([t for t in trainers if t["prior"]]) == 3 * (1 + 2)
    assert choice.candidates[1].fold_scores == stack_alone.candidates[0].fold_scores
    assert choice.candidates[1].temperature_scale == stack_alone.candidates[0].temperature_scale


def test_the_choice_reports_its_priors_epochs_and_users_fitted(base, monkeypatch) -> None:
    monkeypatch.setattr(recipe_choice, "PROGRESS_SECONDS", 0.0)
    heard: list[str] = []
    choose_recipe(base, _rows(), LABELS, candidates=[POOLED], progress=heard.append)
    assert any(m.startswith("pooled-head, fold 1/3: task prior, epoch 1/5") and "left" in m for m in heard)
    assert any(m.startswith("pooled-head, fold 1/3: ") and "users fitted; about" in m for m in heard)


def test_the_candidates_encodings_are_computed_once_per_prior_in_bf16_and_never_reach_the_served_cache(
        base, monkeypatch) -> None:
    from localize import activations, engine
    from localize.activations import ActivationCache

    monkeypatch.setattr(activations, "cpu_has_native_bf16", lambda: True)
    passes: list[tuple[int, bool]] = []
    real = engine.encode_pooled

    def spy(base, encoder, start_hidden, mask, **options):  # noqa: ANN001, ANN202
        passes.append((mask.shape[0], torch.is_autocast_enabled(mask.device.type)))
        return real(base, encoder, start_hidden, mask, **options)

    monkeypatch.setattr(engine, "encode_pooled", spy)
    lora_head = Candidate("prior-head", TrainingArguments(method="lora", method_options={"r": 2, "layers": [-1]},
                                                           train_scope="head", prior_max_epochs=1), "LoRA prior")
    served = ActivationCache()
    choice = choose_recipe(base, _rows(), LABELS, candidates=[lora_head, POOLED], cache=served)
    assert choice.winner in {"prior-head", "pooled-head"}
    # One pass per fold's prior over every text (fewer than 128), none in the users' fits; all in bfloat16.
    assert passes == [(len(TEXTS), True)] * 3
    layers = {key[2] for key in served._entries}
    assert layers == {base.dims.num_layers - 1}  # only the prior's frozen input, which its final training reads


def test_a_candidates_decision_rule_is_fitted_on_its_held_out_logits_as_served() -> None:
    """Where a fit was calibrated, the task's correction divides its logits first; the rule is stored with the
    candidate."""
    rng = np.random.default_rng(0)
    held_out = {}
    for user in range(30):
        targets = (rng.random(60) < 0.3).astype(int)
        logits = np.stack([np.zeros(60), 2.0 * targets - 2.5 + rng.normal(0.0, 1.0, 60)], 1)  # label 1 read too low
        held_out[f"u{user}"] = [recipe_choice._HeldOut(targets.tolist(), logits.argmax(1).tolist(), logits, True)]
    plain, corrected = (recipe_choice.CandidateResult("head", "a head", temperature_scale=scale) for scale in (1, 2))
    recipe_choice._fit_decision_offsets(plain, held_out, ["no", "yes"])
    recipe_choice._fit_decision_offsets(corrected, held_out, ["no", "yes"])
    assert plain.decision_offsets["yes"] > 0.5 and plain.decision_gain > 0 and plain.decision_gain_t >= 2
    assert corrected.decision_offsets["yes"] == pytest.approx(plain.decision_offsets["yes"] / 2, abs=0.11)


def test_the_winners_decision_rule_travels_with_its_recipe(base, monkeypatch) -> None:
    def fitted(result, held_out, label_set):  # noqa: ANN001, ANN202
        result.decision_offsets = {label_set[1]: 0.35} if result.name == "pooled-head" else {}

    monkeypatch.setattr(recipe_choice, "_fit_decision_offsets", fitted)
    choice = choose_recipe(base, _rows(), LABELS, candidates=[MUTE, POOLED])
    assert choice.winner == "pooled-head" and choice.winner_args.decision_offsets == {LABELS[1]: 0.35}
    assert choice.to_dict()["candidates"][1]["decision_offsets"] == {LABELS[1]: 0.35}


def test_a_lone_mlp_head_is_scored_from_the_first_of_the_averaged_heads_as_if_fitted_alone(base, trainers) -> None:
    lone_args = TrainingArguments(method="head", method_options={"hidden": 8}, train_scope="head",
                                  init_from_prior=False, head_hidden=8, max_epochs=3, patience=1)
    lone = Candidate("lone-mlp", lone_args, "one MLP head per user")
    averaged = Candidate("averaged-mlp", dataclasses.replace(lone_args, head_ensemble=3), "three averaged")
    together = choose_recipe(base, _rows(), LABELS, candidates=[lone, averaged])
    fits_together = len(trainers)
    alone = choose_recipe(base, _rows(), LABELS, candidates=[lone])
    assert fits_together == len(trainers) - fits_together  # the lone head's fits cost no trainer of their own
    (scored, averaged_result), (fitted,) = together.candidates, alone.candidates
    assert scored.scored_from == "averaged-mlp" and fitted.scored_from is None and averaged_result.scored_from is None
    assert scored.per_user == fitted.per_user and scored.score == fitted.score and scored.users == fitted.users
    # The held-out logits and uniform shares match too: the calibration correction fitted on them is the same.
    assert (scored.temperature_scale, scored.added_uniform_share) == (fitted.temperature_scale,
                                                                      fitted.added_uniform_share)
    assert scored.fold_scores == fitted.fold_scores and averaged_result.seconds > 0


def test_held_out_splits_are_folds_by_text_on_a_small_task_and_one_fifth_on_a_large_one(monkeypatch) -> None:
    texts = [f"note {i}" for i in range(60)]
    folds = recipe_choice.held_out_splits(texts + texts[:5])  # a repeated text is one text
    assert len(folds) == recipe_choice.FOLDS and set().union(*folds) == set(texts)
    assert sum(len(f) for f in folds) == len(texts)  # every text held out once
    monkeypatch.setattr(recipe_choice, "SMALL_TASK_TEXTS", 50)
    [held] = recipe_choice.held_out_splits(texts)
    assert held == {t for t in texts if choice_fold(t, 5) == 0} and 0 < len(held) < len(texts) / 2
