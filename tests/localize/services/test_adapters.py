"""A damaged adapter store never takes predictions down while a good version exists: a corrupt or missing file of
the active version is reported clearly, recorded on the version and on its job, and the newest earlier good version
answers until the bad one is repaired and activated again. Run on SQLite and PostgreSQL, with the local store and
with an fsspec (``memory://``) store."""
from __future__ import annotations

import logging
import uuid

import pytest
from sqlmodel import select

from localize.db.models import AdapterVersion, JobEvent
from localize.db.session import session_scope
from localize.errors import AdapterError, ConflictError
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services import jobs as job_service
from localize.services.labels import upsert_labels
from localize.services.predictions import PredictionRequest, fanout, predict
from localize.services.tasks import create_task, get_task
from localize.services.users import get_user
from localize.store import LocalAdapterStore
from localize.worker import Worker

from .support import FAST, JOHN_LABELS, LABELS, TEXTS, label_rows

TEXT = "Invoice 731 from Hooli for office printer toner"


@pytest.fixture(params=["local", "memory"])
def store_runtime(request, make_runtime) -> Runtime:
    """A runtime whose adapter store is a local folder or an fsspec ``memory://`` URL."""
    if request.param == "local":
        yield make_runtime()
    else:
        runtime = make_runtime(adapter_store=f"memory://localize-test-{uuid.uuid4().hex}/adapters")
        yield runtime
        runtime.store.fs.rm(runtime.store.root, recursive=True)


def _train(runtime: Runtime, times: int) -> list[AdapterVersion]:
    """John labels the notes texts; ``times`` jobs each make a version. Returns the versions, oldest first."""
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="notes", labels=LABELS)
        upsert_labels(session=session, task=task, rows=label_rows("john", TEXTS, JOHN_LABELS))
    worker = Worker(runtime, worker_id="w")
    for seed in range(times):
        with session_scope(runtime.database) as session:
            job_service.queue_training(session=session, task=get_task(session=session, name="notes"),
                                       user=get_user(session=session, name="john"),
                                       args=FAST.__class__.from_dict({**FAST.to_dict(), "seed": seed}))
        assert worker.run_once() is not None
    return _versions(runtime)


def _versions(runtime: Runtime) -> list[AdapterVersion]:
    with session_scope(runtime.database) as session:
        return adapter_service.list_versions(session=session, task=get_task(session=session, name="notes"),
                                             user=get_user(session=session, name="john"))


def _predict(runtime: Runtime):  # noqa: ANN202
    with session_scope(runtime.database) as session:
        return predict(session=session, runtime=runtime,
                       requests=[PredictionRequest(user="john", task="notes", text=TEXT)])[0]


def _file(runtime: Runtime, row: AdapterVersion, name: str) -> tuple:
    """(read, write, remove) for one stored file, whatever the backend."""
    store = runtime.store
    if isinstance(store, LocalAdapterStore):
        path = store.path(row.store_key, row.version) / name
        return path.read_bytes, path.write_bytes, path.unlink
    path = f"{store._prefix(row.store_key, row.version)}/{name}"
    return (lambda: store.fs.cat_file(path)), (lambda data: store.fs.pipe_file(path, data)), (lambda: store.fs.rm_file(path))


def _activate(runtime: Runtime, version: int) -> AdapterVersion:
    with session_scope(runtime.database) as session:
        return adapter_service.activate_version(session=session, store=runtime.store,
                                                task=get_task(session=session, name="notes"),
                                                user=get_user(session=session, name="john"), version=version)


def test_a_corrupt_active_version_falls_back_to_the_previous_good_one(store_runtime: Runtime, caplog) -> None:
    runtime = store_runtime
    v1, v2 = _train(runtime, 2)
    assert (v1.is_active, v2.is_active) == (False, True)
    good = _predict(runtime)
    assert good.version == 2
    runtime.engine.evict(adapter_service.engine_key(v2))  # as after a restart, or on another replica: v2 must be read from the store again
    read, write, _ = _file(runtime, v2, "head.safetensors")
    original = read()
    write(original[:-1] + bytes([original[-1] ^ 1]))  # one flipped bit

    with caplog.at_level(logging.WARNING, logger="localize.services.adapters"):
        answer = _predict(runtime)
    assert answer.version == 1 and answer.label in LABELS  # the previous good version answers
    with session_scope(runtime.database) as session:
        (fanned,) = fanout(session=session, runtime=runtime, task=get_task(session=session, name="notes"), text=TEXT)
    assert (fanned.user, fanned.version, fanned.label) == ("john", 1, answer.label)  # fan-out too
    assert any("version 2 cannot be loaded" in r.getMessage() and "head.safetensors" in r.getMessage()
               for r in caplog.records)
    v1, v2 = _versions(runtime)
    assert v2.is_active and v1.load_error is None  # the pointer is not moved: the fallback is only for serving
    assert "version 2 is corrupt: head.safetensors does not match its recorded sha256" in v2.load_error
    assert v2.load_error_at is not None
    with session_scope(runtime.database) as session:
        events = session.exec(select(JobEvent).where(JobEvent.level == "error")).all()
    assert len(events) == 1 and "adapter version 2 can no longer be loaded" in events[0].message

    # Recorded once: later requests go straight to version 1 without reading version 2's files again.
    reads = []
    original_load = runtime.store.load
    runtime.store.load = lambda key, version, **kw: reads.append(version) or original_load(key, version, **kw)
    assert _predict(runtime).version == 1
    assert 2 not in reads

    # A version with a bad file cannot be activated; once its file is restored, activating it clears the record.
    with pytest.raises(ConflictError, match=r"adapter version 2 of user 'john' in task 'notes' cannot be activated: "
                                            r".*head\.safetensors does not match"):
        _activate(runtime, 2)
    write(original)
    row = _activate(runtime, 2)
    assert row.load_error is None and row.load_error_at is None
    assert _predict(runtime).version == 2


def test_a_missing_version_folder_falls_back_too(make_runtime) -> None:
    runtime = make_runtime()
    v1, v2, v3 = _train(runtime, 3)
    for name in ("head.safetensors", "localize.json"):
        _file(runtime, v3, name)[2]()  # v3's manifest and head are gone
    _file(runtime, v2, "head.safetensors")[2]()  # and v2's head
    answer = _predict(runtime)
    assert answer.version == 1
    v1, v2, v3 = _versions(runtime)
    assert "version 3 is not in the store (localize.json is missing" in v3.load_error
    assert "version 2 is corrupt: head.safetensors is missing" in v2.load_error
    assert v1.load_error is None and v3.is_active


def test_without_a_good_version_the_error_names_the_version_and_the_file(make_runtime) -> None:
    runtime = make_runtime()
    (v1,) = _train(runtime, 1)
    runtime.engine.evict(adapter_service.engine_key(v1))
    _file(runtime, v1, "head.safetensors")[1](b"garbage")
    with pytest.raises(AdapterError, match=r"version 1 cannot be served and no earlier version can stand in: "
                                           r".*version 1 is corrupt: head\.safetensors does not match"):
        _predict(runtime)
    with pytest.raises(AdapterError, match=r"version 1 was recorded as unloadable"):
        _predict(runtime)  # the second request says it was recorded, still naming the file
    with pytest.raises(AdapterError, match=r"head\.safetensors"):
        _predict(runtime)


def test_a_passing_store_outage_is_not_recorded_on_the_version(make_runtime, monkeypatch) -> None:
    """Only a missing or corrupt file marks a version unloadable; an I/O error (a network store that failed
    once) falls back for this request and tries the version again next time."""
    runtime = make_runtime()
    v1, v2 = _train(runtime, 2)
    runtime.engine.evict(adapter_service.engine_key(v2))
    store = runtime.store
    original = store._read
    monkeypatch.setattr(store, "_read", lambda key, version, name: (_ for _ in ()).throw(OSError("timed out"))
                        if version == 2 else original(key, version, name))
    assert _predict(runtime).version == 1
    assert _versions(runtime)[1].load_error is None
    monkeypatch.setattr(store, "_read", original)
    assert _predict(runtime).version == 2


def test_export_checks_the_recorded_hashes(make_runtime, tmp_path) -> None:
    runtime = make_runtime(adapter_store=f"memory://localize-test-{uuid.uuid4().hex}")
    (v1,) = _train(runtime, 1)
    out = adapter_service.export_version(store=runtime.store, row=v1, destination=tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == sorted(v1.files)
    with pytest.raises(ConflictError, match="is not empty"):
        adapter_service.export_version(store=runtime.store, row=v1, destination=out)
    _file(runtime, v1, "head.safetensors")[1](b"garbage")
    with pytest.raises(AdapterError, match=r"head\.safetensors does not match"):
        adapter_service.export_version(store=runtime.store, row=v1, destination=tmp_path / "again")
