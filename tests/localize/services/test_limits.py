"""Bounded training arguments (checked when a job is queued, each refusal naming the field and its range) and
the per-user quotas: pending jobs and labels."""
from __future__ import annotations

import pytest
from sqlmodel import Session

from localize.errors import ConflictError, ValidationError
from localize.labels_io import LabelRow
from localize.services.jobs import queue_training, training_arguments
from localize.services.labels import upsert_labels
from localize.services.limits import apply_label_quota, base_depth, check_pending_jobs
from localize.services.tasks import create_task
from localize.services.users import get_user

from .support import FAST, JOHN_LABELS, TEXTS, label_rows


def test_the_bundled_base_has_six_layers() -> None:
    assert base_depth() == 6


@pytest.mark.parametrize("values, field, allowed", [
    ({"method": "lora", "method_options": {"r": 1_000_000}}, "method_options.r", "an integer >= 1 and <= 256"),
    ({"max_epochs": 10**8}, "max_epochs", "an integer >= 1 and <= 1000"),
    ({"patience": 10**8}, "patience", "an integer >= 1 and <= 1000"),
    ({"batch_size": 10**9}, "batch_size", "an integer >= 1 and <= 4096"),
    ({"learning_rate": 5.0}, "learning_rate", "a number > 0 and <= 1"),
    ({"method": "lora", "method_options": {"layers": [99]}}, "method_options.layers", "each in -6..5"),
    ({"method": "lora", "method_options": {"layers": [0, -6]}}, "method_options.layers", "6 distinct layers"),
    ({"method": "lora", "method_options": {"alpha": 1e9}}, "method_options.alpha", "a number > 0 and <= 10000"),
    ({"seed": 2**63}, "seed", "an integer >= 0 and <= 4294967295"),
])
def test_arguments_out_of_range_are_refused_naming_the_field_and_range(values, field, allowed) -> None:
    with pytest.raises(ValidationError, match="out of range") as raised:
        training_arguments(values, default_method="head")
    assert [error["field"] for error in raised.value.errors] == [field]
    assert allowed in raised.value.errors[0]["message"]


def test_every_bad_argument_is_named_at_once_and_sane_ones_pass() -> None:
    with pytest.raises(ValidationError) as raised:
        training_arguments({"max_epochs": 5000, "batch_size": 10**5, "patience": 10**6}, default_method="head")
    assert [error["field"] for error in raised.value.errors] == ["max_epochs", "patience", "batch_size"]
    args = training_arguments({"method": "lora", "method_options": {"r": 16, "layers": [-2, -1]}, "max_epochs": 50},
                              default_method="head")
    assert args.method_options["r"] == 16


def test_a_user_may_hold_only_so_many_pending_jobs(session: Session, task) -> None:
    other = create_task(session=session, name="other", labels=["personal", "work"])
    for each in (task, other):
        upsert_labels(session=session, task=each, rows=label_rows("john", TEXTS, JOHN_LABELS))
    john = get_user(session=session, name="john")
    check_pending_jobs(session=session, user=john, limit=1)
    queue_training(session=session, task=task, user=john, args=FAST)
    with pytest.raises(ConflictError, match=r"has 1 queued or running job\(s\).*max_pending_jobs_per_user=1"):
        check_pending_jobs(session=session, user=john, limit=1)
    check_pending_jobs(session=session, user=john, limit=2)
    check_pending_jobs(session=session, user=john, limit=None)


def test_new_labels_past_the_quota_are_row_errors_and_updates_always_pass(session: Session, task) -> None:
    upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS[:3], JOHN_LABELS[:3]))
    rows = label_rows("john", TEXTS[:5], ["work"] * 5)  # 3 updates, then 2 new
    rows.append(LabelRow(line=6, user="john", text="bad\x00", label="work"))  # invalid: passed on, takes no share
    kept, errors = apply_label_quota(session=session, task=task, rows=rows, limit=4, max_text_chars=1000)
    assert [row.line for row in kept] == [1, 2, 3, 4, 6]
    assert [(error.line, error.message.split(";")[0]) for error in errors] == [
        (5, "user 'john' has 4 labels, the most a user may store (max_labels_per_user=4)")]
    assert apply_label_quota(session=session, task=task, rows=rows, limit=None, max_text_chars=1000) == (rows, [])
