"""The default recipe through the services: the task prior tunes the top layers once; each user's version is a
linear head that references the prior version it was trained on. Stored, registered, served after a restart with
the prior resident once for every user, protected from deletion while heads read it, and a damaged prior is named
in the error. Run on SQLite and PostgreSQL."""
from __future__ import annotations

import dataclasses

import pytest

from localize.db.session import session_scope
from localize.errors import AdapterError, ConflictError
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services import jobs as job_service
from localize.services.labels import upsert_labels
from localize.services.predictions import PredictionRequest, fanout, predict
from localize.services.tasks import create_task, get_task
from localize.services.users import get_user
from localize.settings import Settings
from localize.training_args import TrainingArguments
from localize.worker import Worker

from .support import JANE_LABELS, JOHN_LABELS, LABELS, TEXTS, label_rows

# The default recipe, shorter: the prior's LoRA on the top layers for two epochs.
RECIPE = TrainingArguments(max_epochs=10, prior_max_epochs=2)


def _train(runtime: Runtime, *, prior: bool, users: list[str], args: TrainingArguments = RECIPE) -> None:
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="notes")
        job_service.queue_many(session=session, task=task, users=[get_user(session=session, name=u) for u in users],
                               args=args, prior=prior)
    worker = Worker(runtime, worker_id="w")
    while worker.run_once() is not None:
        pass


def _rows(runtime: Runtime) -> dict[str, list]:
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="notes")
        return {name: adapter_service.list_versions(session=session, task=task,
                                                    user=None if name == "prior" else get_user(session=session,
                                                                                               name=name))
                for name in ("prior", "john", "jane")}


def _predict(runtime: Runtime, texts: list[str]) -> list:
    with session_scope(runtime.database) as session:
        return predict(session=session, runtime=runtime,
                       requests=[PredictionRequest(user=u, task="notes", text=t) for t in texts for u in ("john", "jane")])


@pytest.fixture
def trained(make_runtime) -> Runtime:
    runtime = make_runtime()
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="notes", labels=LABELS)
        upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS, JOHN_LABELS))
        upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS, JANE_LABELS))
    _train(runtime, prior=True, users=["john", "jane"])
    return runtime


def test_a_users_version_is_a_head_that_references_the_prior_version(trained: Runtime) -> None:
    rows = _rows(trained)
    (prior,), (john,), (jane,) = rows["prior"], rows["john"], rows["jane"]
    assert prior.method == "lora" and prior.encoder_version_id is None
    assert prior.metrics["annotators"] == 2  # the prior learnt John's and Jane's own labels, not only their shares
    for user in (john, jane):
        assert user.method == "head" and user.encoder_version_id == prior.id
        assert user.trainable_params == len(LABELS) * 384 + len(LABELS)  # a head: nothing of the prior is copied
        assert user.nbytes < prior.nbytes / 10
        assert user.training_args["train_scope"] == "head"
    # Opposite labels, opposite answers, though both read the same encoder.
    results = _predict(trained, TEXTS[:8])
    john_labels = [r.label for r in results if r.user == "john"]
    jane_labels = [r.label for r in results if r.user == "jane"]
    assert sum(a != b for a, b in zip(john_labels, jane_labels)) >= 6


def test_after_a_restart_the_prior_is_loaded_once_from_the_reference_and_answers_agree(trained: Runtime) -> None:
    before = _predict(trained, TEXTS)
    restarted = Runtime(Settings(**{**trained.settings.model_dump(), "batch_window_ms": 0}))
    after = _predict(restarted, TEXTS)
    for old, new in zip(before, after):
        assert (old.user, old.label, old.version) == (new.user, new.label, new.version)
        assert new.probabilities == pytest.approx(old.probabilities, abs=1e-5)
    rows = _rows(trained)
    # Resident: the two heads and, once, the prior they read (under the key the prior itself is served by).
    assert sorted(restarted.engine.resident_keys()) == sorted(adapter_service.engine_key(r[0]) for r in rows.values())
    with session_scope(restarted.database) as session:
        fanned = fanout(session=session, runtime=restarted, task=get_task(session=session, name="notes"),
                        text=TEXTS[0])
    assert {r.user: r.label for r in fanned} == {r.user: r.label for r in after if r.text == TEXTS[0]}


def test_a_prior_version_that_heads_read_cannot_be_deleted(trained: Runtime) -> None:
    _train(trained, prior=True, users=[])  # a second prior version, now active; the heads still read version 1
    rows = _rows(trained)
    assert [r.version for r in rows["prior"]] == [1, 2] and rows["prior"][1].is_active
    with session_scope(trained.database) as session, pytest.raises(ConflictError, match="encoder of 2 user adapter"):
        adapter_service.delete_version(session=session, store=trained.store,
                                       task=get_task(session=session, name="notes"), user=None, version=1)
    assert trained.store.exists(rows["prior"][0].store_key, 1)
    # Retrained users move to the new prior; then version 1 is free to go.
    _train(trained, prior=False, users=["john", "jane"])
    rows = _rows(trained)
    assert {r[-1].encoder_version_id for r in (rows["john"], rows["jane"])} == {rows["prior"][1].id}
    with session_scope(trained.database) as session:
        for user in ("john", "jane"):
            adapter_service.delete_version(session=session, store=trained.store,
                                           task=get_task(session=session, name="notes"),
                                           user=get_user(session=session, name=user), version=1)
        adapter_service.delete_version(session=session, store=trained.store,
                                       task=get_task(session=session, name="notes"), user=None, version=1)
    assert not trained.store.exists(rows["prior"][0].store_key, 1)


def test_a_damaged_prior_is_named_when_a_head_cannot_be_served(trained: Runtime) -> None:
    prior = _rows(trained)["prior"][0]
    path = trained.store.path(prior.store_key, prior.version) / "adapter_model.safetensors"
    path.write_bytes(path.read_bytes()[:-8])
    restarted = Runtime(trained.settings)
    with pytest.raises(AdapterError, match=r"reads the encoder 'task-\d+/prior' version 1.*adapter_model"):
        _predict(restarted, TEXTS[:1])


def test_a_user_trained_before_any_prior_gets_a_head_on_the_frozen_base(make_runtime) -> None:
    runtime = make_runtime()
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="notes", labels=LABELS)
        upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS, JOHN_LABELS))
    _train(runtime, prior=False, users=["john"])
    with session_scope(runtime.database) as session:
        (john,) = adapter_service.list_versions(session=session, task=get_task(session=session, name="notes"),
                                                user=get_user(session=session, name="john"))
    assert john.method == "head" and john.encoder_version_id is None and john.training_args["train_scope"] == "head"


def test_a_head_lists_and_exports_with_the_prior_version_it_reads(trained: Runtime, tmp_path) -> None:
    rows = _rows(trained)
    prior, john = rows["prior"][0], rows["john"][0]
    with session_scope(trained.database) as session:
        assert adapter_service.prior_versions(session=session, rows=[prior, john]) == {john.id: prior.version}
    exported = adapter_service.export_version(store=trained.store, row=john, destination=tmp_path / "john")
    assert (exported / "head.safetensors").is_file()
    # The prior's files come along, byte for byte as recorded, so the export is usable on its own.
    encoder = exported / "encoder"
    assert {p.name for p in encoder.iterdir()} == set(prior.files)
    assert {name: adapter_service_sha256(encoder / name) for name in prior.files} == prior.files


def test_a_head_whose_prior_is_damaged_is_not_exported_in_part(trained: Runtime, tmp_path) -> None:
    rows = _rows(trained)
    prior, john = rows["prior"][0], rows["john"][0]
    path = trained.store.path(prior.store_key, prior.version) / "adapter_model.safetensors"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(AdapterError, match="adapter_model.safetensors does not match"):
        adapter_service.export_version(store=trained.store, row=john, destination=tmp_path / "john")
    assert not (tmp_path / "john").exists()


def adapter_service_sha256(path) -> str:
    from localize.store import sha256

    return sha256(path.read_bytes())


def test_a_task_with_several_priors_serves_heads_that_read_them_all_and_after_a_restart_alike(make_runtime) -> None:
    runtime = make_runtime()
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="notes", labels=LABELS)
        upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS, JOHN_LABELS))
        upsert_labels(session=session, task=task, rows=label_rows("jane", TEXTS, JANE_LABELS))
    _train(runtime, prior=True, users=["john", "jane"], args=dataclasses.replace(RECIPE, prior_members=2))
    rows = _rows(runtime)
    (prior,), (john,) = rows["prior"], rows["john"]
    assert prior.method == "lora_stack" and len(prior.metrics["members"]) == 2
    assert john.method == "head" and john.encoder_version_id == prior.id
    assert john.trainable_params == len(LABELS) * 2 * 384 + len(LABELS)  # a head on both priors' encodings
    before = _predict(runtime, TEXTS)
    john_labels = [r.label for r in before if r.user == "john"]
    assert sum(a == b for a, b in zip(john_labels, JOHN_LABELS)) >= len(TEXTS) - 2
    restarted = Runtime(Settings(**{**runtime.settings.model_dump(), "batch_window_ms": 0}))
    for old, new in zip(before, _predict(restarted, TEXTS)):
        assert (old.user, old.label, old.version) == (new.user, new.label, new.version)
        assert new.probabilities == pytest.approx(old.probabilities, abs=1e-5)
    # Scored on validation rows like any version, so a retrain replaces it without being forced.
    assert john.metrics.get("val_rows", 0) > 0 and prior.metrics.get("val_rows", 0) > 0
    _train(runtime, prior=False, users=["john"], args=dataclasses.replace(RECIPE, prior_members=2))
    assert [(v.version, v.is_active) for v in sorted(_rows(runtime)["john"], key=lambda v: v.version)] == [
        (1, False), (2, True)]
