"""The trainer: its checks, reproducibility, early stopping, class weighting, calibration (its arguments:
test_training_args.py)."""
from __future__ import annotations

import dataclasses
import math
import random

import pytest
import torch
from localize.adapters import get_method

from localize import epoch_loop
from localize.calibration import spread_evenly
from localize.engine import Engine
from localize.epoch_loop import step_precision
from localize.errors import ValidationError
from localize.training import Trainer, classification_metrics, train_adapter
from localize.training_args import TrainingArguments
from localize.training_rows import held_out_text


def _same(a, b) -> bool:
    return (
        set(a.params) == set(b.params)
        and all(torch.equal(a.params[k], b.params[k]) for k in a.params)
        and all(torch.equal(a.head[k], b.head[k]) for k in ("weight", "bias"))
    )


def _linear_head_options() -> dict:
    """Options for a plain linear head (no MLP, no dropout inside), whatever the head config offers."""
    fields = {f.name for f in dataclasses.fields(get_method("head").config_class)}
    return {"hidden": 0} if "hidden" in fields else {}


# -- the trainer's own checks ------------------------------------------------------------------------------------------
def test_invalid_method_options_surface_when_the_trainer_builds_the_method(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    with pytest.raises(ValueError, match="bogus"):
        Trainer(base, TrainingArguments(method="lora", method_options={"bogus": 1}), texts, john, label_set)


def test_classification_metrics():
    assert classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], 2)["accuracy"] == pytest.approx(0.75)
    assert classification_metrics([0, 1], [0, 1], 3)["macro_f1"] == pytest.approx(2 / 3)  # absent class scores 0
    empty = classification_metrics([], [], 2)
    assert empty["accuracy"] != empty["accuracy"]  # nan


# -- Trainer input checks ---------------------------------------------------------------------------------------------
def test_unknown_labels_are_a_validation_error(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    labels = list(john)
    labels[3] = "holiday"
    with pytest.raises(ValidationError, match=r"\['holiday'\].*not in the label set"):
        Trainer(base, TrainingArguments(), texts, labels, label_set)


def test_too_few_labels_are_a_validation_error(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    with pytest.raises(ValidationError, match=r"3 labelled texts are too few.*at least 4"):
        Trainer(base, TrainingArguments(), texts[:3], john[:3], label_set)
    with pytest.raises(ValidationError, match="at least 10"):
        Trainer(base, TrainingArguments(min_labels=10), texts[:9], john[:9], label_set)
    Trainer(base, TrainingArguments(min_labels=2), texts[:2], john[:2], label_set)  # enough


def test_texts_and_labels_must_pair_up(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    with pytest.raises(ValidationError, match=r"24 texts but 23 labels"):
        Trainer(base, TrainingArguments(), texts, john[:-1], label_set)


# -- reproducibility --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["head", "lora"])
def test_same_seed_same_adapter_different_seed_differs(base, tiny_texts, method):
    texts, john, _, label_set = tiny_texts
    # Everything the seed controls: split, initialisation, batch order (dropout switched off).
    options = {"dropout": 0.0, "layers": [-1]} if method == "lora" else _linear_head_options()

    def run(seed):
        args = TrainingArguments(method=method, method_options=options, max_epochs=2, pooled_dropout=0.0, seed=seed)
        return train_adapter(base, args, texts, john, label_set)

    first, again, other = run(0), run(0), run(1)
    assert _same(first, again)
    assert not _same(first, other)
    assert first.meta["history"] == again.meta["history"]


def test_same_seed_same_adapter_with_default_dropout(base, tiny_texts):
    """The seed covers dropout too (pooled dropout, LoRA dropout), whatever else used torch's global RNG."""
    texts, john, _, label_set = tiny_texts
    args = TrainingArguments(method="lora", method_options={"layers": [-1]}, max_epochs=2, seed=0)
    first = train_adapter(base, args, texts, john, label_set)
    torch.rand(3)  # any other use of the global RNG in between (another request, another job)
    assert _same(first, train_adapter(base, args, texts, john, label_set))


# -- precision --------------------------------------------------------------------------------------------------------
def _autocasts(trainer: Trainer) -> bool:
    with step_precision(trainer.args, trainer.adapter, trainer.train_split, accelerator=None):
        return torch.is_autocast_enabled("cpu")


def test_bf16_on_a_cpu_autocasts_only_training_steps_that_run_encoder_layers(cpu_base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    base = cpu_base

    def prepared(method, mixed_precision, **options):
        trainer = Trainer(base, TrainingArguments(method=method, mixed_precision=mixed_precision, max_epochs=1,
                                                  **options), texts, john, label_set)
        trainer.prepare()
        return trainer

    assert _autocasts(prepared("lora", "bf16", method_options={"layers": [-1]}))
    assert not _autocasts(prepared("lora", "no", method_options={"layers": [-1]}))
    # A head reads pooled vectors: too little work for bf16 to pay, so it stays float32 even when asked.
    assert not _autocasts(prepared("head", "bf16", method_options=_linear_head_options()))


@pytest.mark.parametrize(("amx", "avx512_bf16"), [(True, True), (False, True), (False, False)])
def test_auto_precision_trains_in_bf16_only_on_a_cpu_that_computes_bf16_natively(cpu_base, tiny_texts, monkeypatch,
                                                                                 amx, avx512_bf16):
    texts, john, _, label_set = tiny_texts
    base = cpu_base
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    epoch_loop.cpu_has_native_bf16.cache_clear()
    try:
        trainer = Trainer(base, TrainingArguments(method="lora", method_options={"layers": [-1]}, max_epochs=1),
                          texts, john, label_set)
        trainer.prepare()
        assert _autocasts(trainer) is (amx or avx512_bf16)
    finally:
        epoch_loop.cpu_has_native_bf16.cache_clear()


def test_bf16_training_learns_what_float32_learns_and_keeps_float32_weights(base, tiny_texts):
    texts, john, _, label_set = tiny_texts

    def run(mixed_precision):
        args = TrainingArguments(method="lora", method_options={"layers": [-2, -1], "dropout": 0.0}, max_epochs=3,
                                 pooled_dropout=0.0, mixed_precision=mixed_precision, seed=0)
        return train_adapter(base, args, texts, john, label_set)

    full, mixed = run("no"), run("bf16")
    assert all(value.dtype == torch.float32 for value in [*mixed.params.values(), *mixed.head.values()])
    losses = [(a["train_loss"], b["train_loss"]) for a, b in zip(full.meta["history"], mixed.meta["history"])]
    assert losses and all(math.isfinite(b) and abs(a - b) <= 0.02 * a for a, b in losses), losses
    assert not _same(full, mixed)  # it did compute in another precision
    engine = Engine(base, capacity=2)
    served = engine.predict([(engine.adapter("mixed", lambda: mixed), text) for text in texts[:8]])
    assert all(math.isfinite(p) for row in served for p in row.probabilities.values())


def test_attention_under_cpu_autocast_runs_in_float32(cpu_base):
    base = cpu_base
    hidden = torch.randn(2, 7, base.dims.hidden_size, requires_grad=True)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    exact = base.run_layers(hidden, mask, start=4, stop=6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = base.run_layers(hidden, mask, start=4, stop=6)
    mixed.float().sum().backward()
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all()
    assert torch.allclose(mixed.float(), exact, atol=0.1), (mixed.float() - exact).abs().max()


# -- early stopping ---------------------------------------------------------------------------------------------------
def test_early_stopping_ends_before_max_epochs_and_keeps_the_best(base, tiny_texts):
    texts, _, _, _ = tiny_texts
    rng = random.Random(0)
    noise = [rng.choice(["a", "b"]) for _ in texts]  # nothing to learn: validation loss soon stops improving
    args = TrainingArguments(method="head", method_options=_linear_head_options(), patience=1, max_epochs=50,
                             pooled_dropout=0.0)
    trainer = Trainer(base, args, texts, noise, ["a", "b"])
    trainer.train()
    metrics = trainer.metrics
    assert metrics["val_rows"] > 0
    assert metrics["train_rows"] + metrics["val_rows"] == len(texts)
    assert metrics["epochs"] < 50
    assert metrics["epochs"] == len(trainer.history)
    losses = [record["val_loss"] for record in trainer.history]
    assert losses[-1] >= min(losses) - 1e-4  # it stopped because the last epoch did not improve
    assert metrics["val_loss"] == pytest.approx(min(losses), abs=1e-6)  # the best epoch's state was restored


def test_no_validation_rows_means_all_epochs(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    args = TrainingArguments(method="head", validation_fraction=0.0, patience=1, max_epochs=4)
    trainer = Trainer(base, args, texts, john, label_set)
    trainer.train()
    assert trainer.metrics["epochs"] == 4
    assert trainer.metrics["val_rows"] == 0 and "val_loss" not in trainer.metrics


def test_progress_is_reported(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    seen = []
    Trainer(base, TrainingArguments(method="head", max_epochs=3, validation_fraction=0.0), texts, john, label_set,
            progress=lambda fraction, message: seen.append((fraction, message))).train()
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert seen[0][1].startswith("epoch 1")
    # Every epoch but the last says how long the rest can take; the last, nothing (nothing is left).
    assert all("left" in message for _, message in seen[:2]) and "left" not in seen[2][1]


def test_rows_scored_together_in_chunks_by_length_keep_their_order(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    trainer = Trainer(base, TrainingArguments(method="lora", method_options={"layers": [-1], "r": 2}, max_epochs=1,
                                              validation_fraction=0.0), texts, john, label_set)
    trainer.train()
    mixed = [texts[0] + " and then some more words" * 6, texts[1], texts[2] + " again" * 3, texts[3]]
    together = trainer.predict_proba(mixed)  # one chunk, run shortest first
    one_by_one = torch.cat([trainer.predict_proba([text]) for text in mixed])
    torch.testing.assert_close(together, one_by_one, atol=1e-5, rtol=1e-4)


# -- class weighting --------------------------------------------------------------------------------------------------
def test_balanced_class_weights_raise_minority_recall(base):
    vendors = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises", "Hooli",
               "Soylent"]
    places = ["the pizzeria", "grandma's house", "the cinema", "the beach bar", "the zoo", "the bakery", "the park",
              "the museum"]
    work = [f"Invoice {100 + i} from {v} for office printer paper" for i, v in enumerate(vendors)]
    work += [f"Quarterly VAT payment for the company, supplier {v}" for v in vendors]
    work += [f"Payroll transfer for contractor at {v}" for v in vendors]
    home = [f"Dinner with my family at {p}" for p in places]
    texts, labels = work + home[:3], ["work"] * len(work) + ["personal"] * 3  # 24 : 3
    held_out = home[3:] + [f"Birthday present for my sister, bought at {p}" for p in places]

    engine = Engine(base)

    def minority(weighting):
        args = TrainingArguments(method="head", method_options=_linear_head_options(), class_weighting=weighting,
                                 max_epochs=3, validation_fraction=0.0, pooled_dropout=0.0)
        weights = train_adapter(base, args, texts, labels, ["personal", "work"])
        predictions = engine.predict([(weights, text) for text in held_out])
        recall = sum(p.label == "personal" for p in predictions) / len(held_out)
        mean_probability = sum(p.probabilities["personal"] for p in predictions) / len(held_out)
        return recall, mean_probability

    none_recall, none_probability = minority("none")
    sqrt_recall, sqrt_probability = minority("sqrt")
    balanced_recall, balanced_probability = minority("balanced")
    assert balanced_recall > none_recall
    assert balanced_probability > sqrt_probability > none_probability


# -- the task prior ----------------------------------------------------------------------------------------------------
def test_repeated_texts_train_once_with_each_labels_share_as_a_soft_target(base, tiny_texts):
    texts, john, jane, label_set = tiny_texts
    pooled_texts, pooled_labels = texts + texts + texts[:4], john + jane + john[:4]  # three users, pooled
    args = TrainingArguments(method="head", method_options=_linear_head_options(), max_epochs=2)
    trainer = Trainer(base, args, pooled_texts, pooled_labels, label_set)
    trainer.prepare()

    assert trainer.texts == texts  # one row per distinct text, first-seen order
    first = label_set.index(john[0])  # texts[0]: john's label twice, jane's once
    assert trainer.soft_targets[0][first] == pytest.approx(2 / 3) and trainer.targets[0] == first
    assert trainer.soft_targets[5] == [0.5, 0.5] and trainer.targets[5] == 0  # a tie goes to the first label
    rows = len(trainer.train_split.texts)
    assert trainer.train_split.soft.shape == (rows, 2)
    assert torch.allclose(trainer.train_split.soft.sum(1), torch.ones(rows))
    unmerged = Trainer(base, dataclasses.replace(args, merge_duplicate_texts=False), pooled_texts, pooled_labels,
                       label_set)
    assert unmerged.texts == pooled_texts and unmerged.soft_targets is None


def test_head_scope_keeps_the_priors_encoder_and_trains_only_the_head(base, tiny_texts):
    texts, john, jane, label_set = tiny_texts
    args = TrainingArguments(method="lora", method_options={"layers": [-1], "r": 2}, max_epochs=2, train_scope="head",
                             prior_max_epochs=1, validation_fraction=0.0)
    prior_trainer = Trainer(base, args.for_prior(), texts + texts, john + jane, label_set)
    prior = prior_trainer.train()
    assert prior_trainer.metrics["epochs"] == 1 and prior_trainer.encoder is None  # the prior trains everything
    assert any(v.abs().sum() > 0 for k, v in prior.params.items() if "lora_B" in k)

    trainer = Trainer(base, args, texts, jane, label_set, init=prior)
    user = trainer.train()
    assert trainer.metrics["epochs"] == 1  # a MAP head: one solve, no epochs
    # The user's adapter is a linear head that reads the prior's encoder, referenced, not copied.
    assert user.method.name == "head" and user.params == {} and user.encoder is not None
    assert all(torch.equal(user.encoder.params[k], prior.params[k]) for k in prior.params)
    assert user.encoder.fingerprint == prior.fingerprint
    assert not torch.equal(user.head["weight"], prior.head["weight"])
    assert user.nbytes == 4 * (len(label_set) * base.dims.hidden_size + len(label_set))
    # Encodings were computed once per text, and serving (the engine's forward) agrees with the trainer's scores.
    assert all(row.shape == (base.dims.hidden_size,) for row in trainer.train_split.inputs)
    served = Engine(base).predict([(user, t) for t in texts[:4]])
    expected = trainer.predict_proba(texts[:4])
    for prediction, probabilities in zip(served, expected):
        assert [prediction.probabilities[label] for label in label_set] == pytest.approx(probabilities.tolist(),
                                                                                          abs=1e-4)
    # Without a prior, the user gets a linear head on the frozen base (not a per-user LoRA).
    no_prior = Trainer(base, args, texts, jane, label_set).train()
    assert no_prior.method.name == "head" and no_prior.encoder is None and no_prior.params == {}


# -- users own their labels -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_opposite_labels_give_opposite_predictions(base, tiny_texts):
    texts, john_labels, jane_labels, label_set = tiny_texts
    args = TrainingArguments(method="lora", method_options={"layers": [-1], "dropout": 0.0}, max_epochs=8,
                             pooled_dropout=0.0)
    john = train_adapter(base, args, texts, john_labels, label_set)
    jane = train_adapter(base, args, texts, jane_labels, label_set)
    assert john.meta["metrics"]["train_accuracy"] == 1.0 and jane.meta["metrics"]["train_accuracy"] == 1.0
    queries = {
        "Invoice 812 from Hooli for office printer toner": "work",
        "Quarterly VAT payment for the company, supplier Soylent": "work",
        "Dinner with my family at the museum": "personal",
        "Birthday present for my sister, bought at the park": "personal",
    }
    engine = Engine(base)
    rows = [(john, q) for q in queries] + [(jane, q) for q in queries]
    predictions = engine.predict(rows)
    opposite = {"work": "personal", "personal": "work"}
    for (weights, query), prediction in zip(rows, predictions):
        expected = queries[query] if weights is john else opposite[queries[query]]
        assert prediction.label == expected, (query, prediction.probabilities)


# -- validation split by text -----------------------------------------------------------------------------------------
def test_a_by_text_split_holds_out_the_same_texts_for_the_prior_and_every_user(base, tiny_texts):
    texts, john, jane, label_set = tiny_texts
    texts = texts + [f"Expense report {i} for the team offsite" for i in range(40)]
    john, jane = john + ["work"] * 40, jane + ["personal"] * 40
    args = TrainingArguments(method="head", validation_fraction=0.3, max_epochs=1)
    prior = Trainer(base, args.for_prior(), texts + texts, john + jane, label_set)
    prior.prepare()
    held_out = set(prior.val_split.texts)
    assert held_out and set(prior.train_split.texts).isdisjoint(held_out)
    # Whatever a user's rows, their order and the seed, the user validates on exactly the texts the prior held out.
    rows = list(zip(texts, jane))
    random.Random(3).shuffle(rows)
    for seed in (0, 5):
        user = Trainer(base, dataclasses.replace(args, seed=seed), [t for t, _ in rows[:50]], [y for _, y in rows[:50]],
                       label_set)
        user.prepare()
        assert set(user.val_split.texts) == held_out & {t for t, _ in rows[:50]}
        assert set(user.train_split.texts).isdisjoint(held_out)
    # A stratified split draws by seed instead, each class giving its share.
    stratified = Trainer(base, dataclasses.replace(args, validation_split="stratified"), texts, john, label_set)
    stratified.prepare()
    assert sorted(set(stratified.val_split.targets.tolist())) == [0, 1]
    assert set(stratified.val_split.texts) != held_out & set(texts)


# -- the task prior learns every annotator's labels -------------------------------------------------------------------
def test_a_prior_with_annotators_learns_each_annotators_own_labels(base, tiny_texts):
    texts, john, jane, label_set = tiny_texts
    args = TrainingArguments(method="lora", method_options={"layers": [-1], "r": 2}, prior_max_epochs=30,
                             validation_fraction=0.0, pooled_dropout=0.0).for_prior()
    # John and Jane disagree on every text: the label shares are 50/50 everywhere, so the shared head learns
    # nothing; each annotator's own head (the shared head plus an offset) must learn its annotator's view.
    trainer = Trainer(base, args, texts + texts, john + jane, label_set, annotators=["john"] * 24 + ["jane"] * 24)
    trainer.train()
    assert trainer.metrics["annotators"] == 2
    pooled = trainer.adapter.all_pooled(trainer.train_split)
    index = {text: i for i, text in enumerate(trainer.train_split.texts)}
    rows = torch.tensor([index[t] for t in texts])
    for who, labels in ((1, john), (0, jane)):  # annotators are indexed by sorted name: jane 0, john 1
        weight = trainer.head["weight"] + trainer.annotator_offsets["weight"][who]
        bias = trainer.head["bias"] + trainer.annotator_offsets["bias"][who]
        predicted = (pooled[rows] @ weight.T + bias).argmax(-1).tolist()
        assert predicted == [label_set.index(label) for label in labels]
    shared = trainer._all_logits(trainer.train_split).softmax(-1)
    assert torch.allclose(shared, torch.full_like(shared, 0.5), atol=0.1)


def test_a_priors_figures_are_its_best_epochs_with_no_second_pass_over_its_rows(base, tiny_texts, monkeypatch):
    texts, john, jane, label_set = tiny_texts
    args = TrainingArguments(method="lora", method_options={"layers": [-1], "r": 2}, prior_max_epochs=3,
                             validation_fraction=0.25, prior_patience=3).for_prior()
    trainer = Trainer(base, args, texts + texts, john + jane, label_set, annotators=["john"] * 24 + ["jane"] * 24)
    scored = []
    original = Trainer._score
    monkeypatch.setattr(Trainer, "_score", lambda self, split, weights: scored.append(len(split.texts))
                        or original(self, split, weights))
    trainer.train()
    best = trainer.history[trainer.metrics["best_epoch"] - 1]
    assert {k: trainer.metrics[k] for k in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1")} == \
        {k: best[k] for k in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1")}
    assert "train_accuracy" not in trainer.metrics
    # One validation pass per epoch, none over the training rows (a minute on a large task).
    assert scored == [len(trainer.val_split.texts)] * len(trainer.history)


def test_annotator_heads_are_off_for_one_annotator_or_weight_zero_and_annotators_must_pair_up(base, tiny_texts):
    texts, john, jane, label_set = tiny_texts
    args = TrainingArguments(method="head", max_epochs=1, validation_fraction=0.0).for_prior()
    assert Trainer(base, args, texts, john, label_set, annotators=["john"] * 24).annotations is None
    off = dataclasses.replace(args, annotator_loss_weight=0.0)
    assert Trainer(base, off, texts + texts, john + jane, label_set, annotators=["a"] * 24 + ["b"] * 24).annotations is None
    with pytest.raises(ValidationError, match="24 texts but 3 annotators"):
        Trainer(base, args, texts, john, label_set, annotators=["a", "b", "c"])


# -- a user's head: the MAP fit toward the prior's head ---------------------------------------------------------------
def _head_on_prior(base, tiny_texts, **overrides):
    texts, john, jane, label_set = tiny_texts
    args = TrainingArguments(**{"method": "lora", "method_options": {"layers": [-1], "r": 2}, "train_scope": "head",
                                "prior_max_epochs": 1, "validation_fraction": 0.0, **overrides})
    prior = Trainer(base, args.for_prior(), texts + texts, john + john, label_set).train()
    return args, prior


def _jane_with_validation_rows(base, tiny_texts):
    """Jane's labels with 40 more texts, so 30% of them make validation rows, and a prior trained on hers."""
    texts, _, jane, label_set = tiny_texts
    texts = texts + [f"Expense report {i} for the team offsite" for i in range(40)]
    jane = jane + ["personal"] * 40
    args, prior = _head_on_prior(base, (texts, jane, jane, label_set), validation_fraction=0.3)
    return texts, jane, label_set, args, prior


def test_a_map_head_solves_its_objective_and_its_strength_pulls_toward_the_priors_head(base, tiny_texts):
    texts, john, jane, label_set = tiny_texts
    args, prior = _head_on_prior(base, tiny_texts)
    trainer = Trainer(base, args, texts, jane, label_set, init=prior)  # Jane disagrees with the prior on every text
    user = trainer.train()
    assert trainer.metrics["epochs"] == 1 and trainer.metrics["best_epoch"] is None
    # Converged: the objective's gradient at the returned head is (numerically) zero.
    device = user.head["weight"].device  # the base's: the split keeps its rows on the CPU
    inputs = torch.stack(trainer.train_split.inputs).to(device)
    weight = user.head["weight"].clone().requires_grad_(True)
    bias = user.head["bias"].clone().requires_grad_(True)
    data = torch.nn.functional.cross_entropy(inputs @ weight.T + bias, trainer.train_split.targets.to(device),
                                             weight=trainer._class_weights(), reduction="sum")
    ((data + args.head_prior_strength * (weight - prior.head["weight"]).pow(2).sum()) / len(texts)).backward()
    assert weight.grad.abs().max() < 1e-3 and bias.grad.abs().max() < 1e-3
    assert trainer.metrics["train_accuracy"] == 1.0
    # Deterministic, and the strength decides how far the head may move from the prior's.
    assert torch.equal(Trainer(base, args, texts, jane, label_set, init=prior).train().head["weight"], user.head["weight"])
    distance = {}
    for strength in (1.0, 100.0, 1e6):
        head = Trainer(base, dataclasses.replace(args, head_prior_strength=strength), texts, jane, label_set,
                       init=prior).train().head["weight"]
        distance[strength] = float((head - prior.head["weight"]).norm())
    assert distance[1.0] > distance[100.0] > distance[1e6]
    assert distance[1e6] < 1e-3


def test_a_map_head_validates_then_trains_on_every_label_and_epoch_heads_do_not(base, tiny_texts):
    texts, jane, label_set, args, prior = _jane_with_validation_rows(base, tiny_texts)
    trainer = Trainer(base, args, texts, jane, label_set, init=prior)
    trainer.train()
    assert 0 < trainer.metrics["val_rows"] and trainer.metrics["refit_rows"] == len(texts)
    assert "val_macro_f1" in trainer.history[0]
    # The validation figures, and the validation probabilities kept for thresholds, are the validated model's,
    # not those of the final head, which has trained on these rows too.
    validated = trainer.val_probabilities
    targets = trainer.val_split.targets.tolist()
    assert classification_metrics(targets, validated.argmax(-1).tolist(), 2)["accuracy"] == trainer.metrics["val_accuracy"]
    assert not torch.allclose(validated, trainer.predict_proba(trainer.val_split.texts))
    kept = Trainer(base, dataclasses.replace(args, refit_on_all=False), texts, jane, label_set, init=prior)
    kept.train()
    assert "refit_rows" not in kept.metrics
    epochs = Trainer(base, dataclasses.replace(args, head_fit="epochs", max_epochs=3, patience=5), texts, jane,
                     label_set, init=prior)
    epochs.train()
    assert epochs.metrics["epochs"] == 3 and "refit_rows" not in epochs.metrics


def test_a_users_mlp_head_reads_the_priors_encoder_and_serves_as_it_trained(base, tiny_texts):
    texts, john, jane, label_set = tiny_texts
    args, prior = _head_on_prior(base, tiny_texts, head_hidden=16, max_epochs=3)
    trainer = Trainer(base, args, texts, jane, label_set, init=prior)
    user = trainer.train()
    assert user.method.name == "head" and user.method.config.hidden == 16 and user.encoder is not None
    assert set(user.params) and trainer.metrics["epochs"] == 3  # an MLP trains by epochs, not by the MAP solve
    served = Engine(base).predict([(user, t) for t in texts[:6]])
    expected = trainer.predict_proba(texts[:6])
    for prediction, probabilities in zip(served, expected):
        assert [prediction.probabilities[label] for label in label_set] == pytest.approx(probabilities.tolist(),
                                                                                          abs=1e-4)


def test_a_by_text_split_of_few_rows_holds_nothing_out_and_never_a_whole_class(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    args = TrainingArguments(method="head", max_epochs=1)
    # 12 rows at 15% expect under min_validation_rows held out: none are, whatever the texts' hashes say.
    small = Trainer(base, args, texts[:12], john[:12], label_set)
    small.prepare()
    assert small.val_split is None and len(small.train_split.texts) == 12
    # A class whose only rows hash into validation keeps them for training.
    rare = next(t for t in (f"Lunch at the park number {i}" for i in range(1000)) if held_out_text(t, 0.15))
    common = [f"Invoice {i} for office supplies" for i in range(120)]
    trainer = Trainer(base, args, common + [rare], ["work"] * 120 + ["personal"], label_set)
    trainer.prepare()
    assert rare in trainer.train_split.texts and trainer.val_split is not None
    assert set(trainer.val_split.targets.tolist()) == {label_set.index("work")}


def test_a_users_head_is_calibrated_by_a_temperature_folded_into_it_and_the_prior_is_not(base, tiny_texts):
    texts, jane, label_set, args, prior = _jane_with_validation_rows(base, tiny_texts)
    assert prior.meta["metrics"].get("temperature", 1.0) == 1.0  # users' heads are pulled toward its head: kept
    calibrated = Trainer(base, args, texts, jane, label_set, init=prior)
    calibrated.train()
    plain = Trainer(base, dataclasses.replace(args, calibrate=False), texts, jane, label_set, init=prior)
    plain.train()
    temperature, share = calibrated.metrics["temperature"], calibrated.metrics.get("uniform_share", 0.0)
    assert temperature != 1.0 and plain.metrics["temperature"] == 1.0 and "uniform_share" not in plain.metrics
    # The same labels, each probability rescaled by the temperature (and a share spread evenly): calibration never
    # changes an answer.
    calibrated_p, plain_p = calibrated.predict_proba(texts), plain.predict_proba(texts)
    assert torch.equal(calibrated_p.argmax(-1), plain_p.argmax(-1))
    assert torch.allclose(calibrated_p, spread_evenly(torch.softmax(torch.log(plain_p) / temperature, -1), share),
                          atol=1e-4)
    # The record abstention reads: one confidence per validation row, of the calibrated validated model.
    record = calibrated.metrics["calibration"]
    assert len(record["confidence"]) == calibrated.metrics["val_rows"] == len(record["correct"])
    assert record["confidence"] == pytest.approx(sorted(calibrated.val_probabilities.max(-1).values.tolist()), abs=1e-4)
    # The fitted pair minimises the validation NLL plus its pulls toward T = 1 and no share.
    logits = torch.log(plain.val_probabilities)
    targets = calibrated.val_split.targets

    def objective(t: float, s: float = share) -> float:
        spread = spread_evenly(torch.softmax(logits / t, -1), s)
        nll = float(torch.nn.functional.nll_loss(torch.log(spread), targets))
        return nll + (math.log(t) ** 2 + (s / 0.1) ** 2) / (2 * len(targets))

    assert objective(temperature) <= min(objective(temperature * 1.1), objective(temperature / 1.1)) + 1e-6
    assert objective(temperature) < objective(1.0, 0.0)


def test_a_task_wide_calibration_correction_rescales_and_spreads_and_changes_no_answer(base, tiny_texts):
    texts, jane, label_set, args, prior = _jane_with_validation_rows(base, tiny_texts)
    fitted = Trainer(base, args, texts, jane, label_set, init=prior)
    fitted.train()
    scaled = Trainer(base, dataclasses.replace(args, temperature_scale=2.5, added_uniform_share=0.2), texts, jane,
                     label_set, init=prior)
    scaled.train()
    assert scaled.metrics["temperature"] == pytest.approx(2.5 * fitted.metrics["temperature"])
    assert scaled.uniform_share == pytest.approx(1 - (1 - fitted.uniform_share) * 0.8)
    assert scaled.metrics["uniform_share"] == scaled.uniform_share  # what the engine serves
    # Served logits are the fitted ones divided by the factor; the record abstention reads is of the scaled model.
    assert torch.allclose(scaled.predict_logits(texts), fitted.predict_logits(texts) / 2.5, atol=1e-5)
    assert torch.equal(scaled.predict_proba(texts).argmax(-1), fitted.predict_proba(texts).argmax(-1))
    assert scaled.predict_proba(texts).max() <= 1 - 0.2 * 2 / 3 + 1e-6
    assert max(scaled.metrics["calibration"]["confidence"]) < max(fitted.metrics["calibration"]["confidence"])
    with pytest.raises(ValueError, match=r"temperature_scale=0.0 must be in \[0.05, 20\]"):
        TrainingArguments(temperature_scale=0.0)
    assert TrainingArguments(temperature_scale=3.0, added_uniform_share=0.1).for_prior() == TrainingArguments().for_prior()


def test_a_task_decision_rule_adds_its_offsets_to_the_served_logits_and_the_abstention_record(base, tiny_texts):
    texts, jane, label_set, args, prior = _jane_with_validation_rows(base, tiny_texts)
    fitted = Trainer(base, args, texts, jane, label_set, init=prior)
    fitted.train()
    offset = {label_set[1]: 1.5}
    shifted = Trainer(base, dataclasses.replace(args, decision_offsets=offset), texts, jane, label_set, init=prior)
    user = shifted.train()
    shift = torch.tensor([0.0, 1.5] + [0.0] * (len(label_set) - 2))
    # Folded into the head's bias after calibration: the engine serves it at no cost, every row moves alike.
    assert torch.allclose(shifted.predict_logits(texts), fitted.predict_logits(texts) + shift, atol=1e-5)
    served = torch.tensor([[p.probabilities[label] for label in label_set]
                           for p in Engine(base).predict([(user, t) for t in texts])])
    assert torch.allclose(served, shifted.predict_proba(texts), atol=1e-5)
    assert shifted.metrics["temperature"] == pytest.approx(fitted.metrics["temperature"])  # fitted before the rule
    # The second label wins more often; the record abstention reads is of the shifted model.
    assert (shifted.predict_proba(texts).argmax(-1) == 1).sum() >= (fitted.predict_proba(texts).argmax(-1) == 1).sum()
    assert shifted.metrics["calibration"] != fitted.metrics["calibration"]
    share, labels = fitted.uniform_share, len(label_set)
    unspread = (fitted.val_probabilities - share / labels) / (1 - share)
    expected = spread_evenly(torch.softmax(torch.log(unspread) + shift, -1), share)
    assert torch.allclose(shifted.val_probabilities, expected, atol=1e-4)
    assert shifted.metrics["calibration"]["confidence"] == pytest.approx(
        sorted(shifted.val_probabilities.max(-1).values.tolist()), abs=1e-4)
    with pytest.raises(ValidationError, match=r"decision_offsets name label\(s\) \['sports'\] that are not in the "
                                              r"label set"):
        Trainer(base, dataclasses.replace(args, decision_offsets={"sports": 1.0}), texts, jane, label_set, init=prior)
    assert TrainingArguments(decision_offsets=offset).for_prior() == TrainingArguments().for_prior()


def test_the_engine_serves_a_versions_uniform_share_and_the_trainer_scores_with_it(base, tiny_texts):
    """A fitted share is stored in the version's metrics; the engine spreads it after the softmax, as the trainer's
    own probabilities (what the evaluation scores) do, and no answer changes."""
    texts, john, jane, label_set = tiny_texts
    args, prior = _head_on_prior(base, tiny_texts)
    trainer = Trainer(base, args, texts, jane, label_set, init=prior)
    user = trainer.train()
    plain = [p.probabilities for p in Engine(base).predict([(user, t) for t in texts[:6]])]
    share = 0.3
    trainer.uniform_share = share
    shared = dataclasses.replace(user, meta={**user.meta, "metrics": {**user.meta["metrics"], "uniform_share": share}})
    assert shared.uniform_share == share and user.uniform_share == 0.0
    served = Engine(base).predict([(shared, t) for t in texts[:6]])
    for prediction, before, probabilities in zip(served, plain, trainer.predict_proba(texts[:6])):
        assert prediction.probabilities == pytest.approx({k: 0.7 * v + 0.15 for k, v in before.items()}, abs=1e-6)
        assert [prediction.probabilities[label] for label in label_set] == pytest.approx(probabilities.tolist(),
                                                                                          abs=1e-4)
        assert prediction.label == max(before, key=before.get)


# -- several task priors side by side (prior_members) -----------------------------------------------------------------
STACKED = TrainingArguments(method="lora", method_options={"layers": [-1], "r": 2}, prior_max_epochs=2,
                            validation_fraction=0.25, prior_members=2, train_scope="head")


def _prior_trainer(base, tiny_texts, args, trainer_class=Trainer, **options):
    """A trainer of the task prior ``args`` read, on John's and Jane's pooled labels."""
    texts, john, jane, label_set = tiny_texts
    return trainer_class(base, args.for_prior(), texts + texts, john + jane, label_set,
                         annotators=["john"] * 24 + ["jane"] * 24, **options)


def _stacked_prior(base, tiny_texts):
    trainer = _prior_trainer(base, tiny_texts, STACKED)
    return trainer, trainer.train()


def _lone(seed: int = 0) -> TrainingArguments:
    return dataclasses.replace(STACKED, prior_members=1, seed=seed)


def test_a_stack_of_priors_holds_the_priors_each_seed_trains_alone(base, tiny_texts):
    trainer, stack = _stacked_prior(base, tiny_texts)
    assert stack.method.name == "lora_stack" and stack.method.config.members == 2
    assert stack.head["weight"].shape == (2, 2 * base.dims.hidden_size)
    assert len(trainer.metrics["members"]) == 2
    assert trainer.metrics["val_rows"] == len(trainer.val_split.texts) > 0  # scored: a retrain may replace it
    assert trainer.metrics["best_epoch"] == max(m["best_epoch"] for m in trainer.metrics["members"])
    for index, member in enumerate(stack.members()):
        alone = _prior_trainer(base, tiny_texts, _lone(index)).train()
        for key, value in alone.params.items():
            assert torch.allclose(member.params[key], value, atol=1e-6), key
        assert torch.allclose(member.head["weight"], alone.head["weight"], atol=1e-6)


def test_a_stack_given_its_first_member_trained_already_trains_only_the_others_and_is_the_same(base, tiny_texts):
    fits: list[int] = []

    class Counting(Trainer):
        def fit(self) -> None:
            fits.append(self.args.seed)
            super().fit()

    first = _prior_trainer(base, tiny_texts, _lone(), Counting)
    first.train()
    fits.clear()
    stack = _prior_trainer(base, tiny_texts, STACKED, Counting, trained_members=[first]).train()
    assert fits == [0, 1]  # the stack itself, then its second member: the first is not trained again
    _, alone = _stacked_prior(base, tiny_texts)
    for key, value in alone.params.items():
        assert torch.allclose(stack.params[key], value, atol=1e-6), key
    assert torch.allclose(stack.head["weight"], alone.head["weight"], atol=1e-6)


def test_a_stack_refuses_a_trained_member_it_would_not_have_trained(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    other_seed = _prior_trainer(base, tiny_texts, _lone(seed=5))
    other_seed.train()
    with pytest.raises(ValueError, match="not the member it would train with seed 0: other training arguments$"):
        _prior_trainer(base, tiny_texts, STACKED, trained_members=[other_seed]).train()
    untrained = _prior_trainer(base, tiny_texts, _lone())
    with pytest.raises(ValueError, match="seed 0: not trained yet$"):
        _prior_trainer(base, tiny_texts, STACKED, trained_members=[untrained]).train()
    fewer = Trainer(base, _lone().for_prior(), texts, john, label_set, annotators=["john"] * 24)
    fewer.train()
    with pytest.raises(ValueError, match="seed 0: other rows$"):
        _prior_trainer(base, tiny_texts, STACKED, trained_members=[fewer]).train()


def test_a_users_map_head_on_a_stack_answers_with_the_mean_of_its_heads_on_each_prior(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    _, stack = _stacked_prior(base, tiny_texts)
    user_args = dataclasses.replace(STACKED, calibrate=False)
    user = Trainer(base, user_args, texts, john, label_set, init=stack)
    weights = user.train()
    assert weights.head["weight"].shape == (2, 2 * base.dims.hidden_size) and not weights.params
    assert user.metrics["val_accuracy"] is not None and len(user.metrics["members"]) == 2
    assert user.metrics["val_rows"] == len(user.val_split.texts) > 0
    queries = ["Invoice 7 from Globex for desks", "Picnic with my cousins at the lake"]
    alone = []
    for index, member in enumerate(stack.members()):
        trainer = Trainer(base, dataclasses.replace(user_args, seed=1000 * index), texts, john, label_set, init=member)
        trainer.train()
        alone.append(trainer.predict_logits(queries))
    assert torch.allclose(user.predict_logits(queries), torch.stack(alone).mean(0), atol=1e-4)


def test_mlp_heads_on_a_stack_are_served_as_trained(base, tiny_texts):
    texts, john, _, label_set = tiny_texts
    _, stack = _stacked_prior(base, tiny_texts)
    user = Trainer(base, dataclasses.replace(STACKED, head_hidden=8, max_epochs=2), texts, john, label_set,
                   init=stack)
    weights = user.train()
    assert weights.method.config.input_width == 2 * base.dims.hidden_size
    assert weights.method.config.hidden == 16  # one MLP of width 8 on each prior, merged
    queries = ["Invoice 7 from Globex for desks", "Picnic with my cousins at the lake", "VAT"]
    served = Engine(base).predict([(weights, q) for q in queries])
    probabilities = torch.tensor([[p.probabilities[label] for label in label_set] for p in served])
    assert torch.allclose(probabilities, user.predict_proba(queries), atol=1e-5)


def test_only_lora_priors_can_be_stacked():
    with pytest.raises(ValueError, match="prior_members=2 stacks LoRA task priors; method 'ia3'"):
        TrainingArguments(method="ia3", prior_members=2)
    with pytest.raises(ValueError, match="prior_members=9 must be in 1..8"):
        TrainingArguments(prior_members=9)
    with pytest.raises(ValueError, match="prior_members=2 fits users' heads on task priors side by side: it needs "
                                         "train_scope='head', not 'all'"):
        TrainingArguments(prior_members=2, train_scope="all")
    prior = TrainingArguments(prior_members=3).for_prior()
    assert prior.method == "lora_stack" and prior.method_options["members"] == 3 and prior.prior_members == 1
    assert prior.method_options["layers"] == TrainingArguments().for_prior().method_options["layers"]
