"""Training arguments: defaults, validation with every bad value named, JSON round trips, the prior's own."""
from __future__ import annotations

import json

import pytest

from localize.training_args import TrainingArguments


def test_arguments_round_trip(tmp_path):
    args = TrainingArguments(method="lora", method_options={"r": 4, "layers": [-1]}, max_epochs=7, batch_size=8,
                             learning_rate=1e-3, validation_fraction=0.2, patience=2, class_weighting="none",
                             pooled_dropout=0.0, seed=11, init_from_prior=False, min_labels=3)
    values = args.to_dict()
    assert values["method_options"] == {"r": 4, "layers": [-1]}
    assert TrainingArguments.from_dict(values) == args
    assert TrainingArguments.from_dict(json.loads(json.dumps(values))) == args
    path = tmp_path / "args.json"
    args.save(path)
    assert json.loads(path.read_text()) == values
    assert TrainingArguments.load(path) == args
    assert TrainingArguments.from_dict(None) == TrainingArguments()
    assert TrainingArguments.from_dict({}) == TrainingArguments()


def test_unknown_argument_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown training argument\(s\) \['epochs', 'lr'\]"):
        TrainingArguments.from_dict({"epochs": 3, "lr": 0.1, "seed": 1})
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"max_epoch": 3}))
    with pytest.raises(ValueError, match="max_epoch"):
        TrainingArguments.load(path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        TrainingArguments.load(path)


@pytest.mark.parametrize(
    "values, match",
    [
        ({"method": "dora"}, r"method 'dora' is not one of"),
        ({"max_epochs": 0}, r"max_epochs=0 must be >= 1"),
        ({"batch_size": 0}, r"batch_size=0 must be >= 1"),
        ({"learning_rate": 0.0}, r"learning_rate=0\.0 must be > 0"),
        ({"learning_rate": -1e-3}, r"learning_rate=-0\.001"),
        ({"validation_fraction": 1.0}, r"validation_fraction=1\.0 must be in \[0, 1\)"),
        ({"validation_fraction": -0.1}, r"validation_fraction=-0\.1"),
        ({"validation_split": "random"}, r"validation_split='random' must be one of \('by_text', 'stratified'\)"),
        ({"early_stopping": "accuracy"}, r"early_stopping='accuracy' must be one of"),
        ({"lr_schedule": "cosine"}, r"lr_schedule='cosine' must be one of"),
        ({"prior_lr_schedule": "cosine"}, r"prior_lr_schedule='cosine' must be one of"),
        ({"head_fit": "sgd"}, r"head_fit='sgd' must be one of \('map', 'epochs'\)"),
        ({"head_prior_strength": -1}, r"head_prior_strength=-1(\.0)? must be >= 0"),
        ({"head_hidden": -4}, r"head_hidden=-4 must be in 0\.\.8192"),
        ({"annotator_loss_weight": -0.5}, r"annotator_loss_weight=-0\.5 must be >= 0"),
        ({"patience": 0}, r"patience=0 must be >= 1"),
        ({"class_weighting": "inverse"}, r"class_weighting='inverse' must be one of \('balanced', 'sqrt', 'none'\)"),
        ({"train_scope": "encoder"}, r"train_scope='encoder' must be one of"),
        ({"prior_max_epochs": 0}, r"prior_max_epochs=0 must be >= 1"),
        ({"last_epoch": 0}, r"last_epoch=0 must be >= 1"),
        ({"prior_last_epoch": -2}, r"prior_last_epoch=-2 must be >= 1"),
        ({"pooled_dropout": 1.0}, r"pooled_dropout=1\.0 must be in \[0, 1\)"),
        ({"min_labels": 1}, r"min_labels=1 must be >= 2"),
        ({"mixed_precision": "fp8"}, r"mixed_precision='fp8' must be one of \('auto', 'bf16', 'no'\)"),
        ({"decision_offsets": {"hate": 11.0}}, r"decision_offsets=\{'hate': 11\.0\} must map label names to numbers "
                                               r"in \[-10, 10\]"),
        ({"decision_offsets": {"hate": float("nan")}}, r"decision_offsets=\{'hate': nan\} must map"),
    ],
)
def test_invalid_arguments_are_rejected(values, match):
    with pytest.raises(ValueError, match=match):
        TrainingArguments(**values)
    with pytest.raises(ValueError, match=match):
        TrainingArguments.from_dict(values)


def test_the_default_recipe_is_a_head_on_the_task_tuned_prior_and_explicit_methods_train_whole():
    args = TrainingArguments()
    assert (args.method, args.train_scope, args.method_options["layers"]) == ("lora", "head", [-4, -3, -2, -1])
    assert (args.head_fit, args.class_weighting) == ("map", "sqrt")
    prior = args.for_prior()
    assert (prior.train_scope, prior.max_epochs, prior.learning_rate, prior.lr_schedule, prior.early_stopping) == \
        ("all", 4, 2e-3, "linear", "loss")
    assert prior.patience == 1  # its validation loss first rising ends it (the best epoch is kept)
    assert TrainingArguments(method="ia3").train_scope == "all"  # asked for IA3 per user: IA3 per user
    ia3_prior = TrainingArguments(method="ia3", max_epochs=40, class_weighting="none").for_prior()
    # other priors train as their users do
    assert (ia3_prior.max_epochs, ia3_prior.learning_rate, ia3_prior.class_weighting, ia3_prior.lr_schedule,
            ia3_prior.patience) == (40, None, "none", "constant", 10)
    assert TrainingArguments(method="lora", method_options={"r": 4}).train_scope == "all"
    assert TrainingArguments.from_dict(args.to_dict()) == args
