"""Fault suite, adapter store: a store that fails while a job writes its new version (the disk fills up after the
first file). The job fails with an error that names the version, the store and what stays active; nothing of the
new version is left in the store or the database, and the previous version keeps serving."""
from __future__ import annotations

import errno
from pathlib import Path

import pytest
from sqlmodel import select

from localize.db.models import AdapterVersion, Job, JobEvent, JobState
from localize.db.session import session_scope
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services import jobs as job_service
from localize.services.labels import upsert_labels
from localize.services.tasks import get_task
from localize.services.users import get_user
from localize.store import LocalAdapterStore
from localize.worker import Worker

from .support import FAST, JOHN_LABELS, TEXTS, label_rows


@pytest.fixture
def database_backend() -> str:
    return "sqlite"  # the store fails, not the database


class _DiskFullAfterOneFile(dict):
    def items(self):  # noqa: ANN201
        files = iter(super().items())
        yield next(files)
        raise OSError(errno.ENOSPC, "No space left on device")


class DiskFillingStore(LocalAdapterStore):
    """Writes the first file of a version, then fails as a full disk does."""

    def _publish(self, key: str, version: int, files: dict[str, bytes]) -> None:
        super()._publish(key, version, _DiskFullAfterOneFile(files))


def _train(runtime: Runtime) -> Job:
    with session_scope(runtime.database) as session:
        task, john = get_task(session=session, name="notes"), get_user(session=session, name="john")
        job_id = job_service.queue_training(session=session, task=task, user=john, args=FAST).id
    assert Worker(runtime, worker_id="w").run_once() == job_id
    with session_scope(runtime.database) as session:
        return session.get(Job, job_id)


def test_a_store_failing_while_writing_fails_the_job_and_keeps_the_active_version(
    runtime: Runtime, task,  # noqa: ARG001
) -> None:
    with session_scope(runtime.database) as session:
        upsert_labels(session=session, task=get_task(session=session, name="notes"),
                      rows=label_rows("john", TEXTS, JOHN_LABELS))
    assert _train(runtime).state == JobState.SUCCEEDED

    root = Path(runtime.settings.resolved_adapter_store)
    runtime.__dict__["store"] = DiskFillingStore(root)
    job = _train(runtime)

    with session_scope(runtime.database) as session:
        key = adapter_service.store_key(get_task(session=session, name="notes"), get_user(session=session, name="john"))
    assert job.state == JobState.FAILED
    assert job.error == (f"writing adapter {key!r} version 2 to the adapter store {runtime.store!r} failed "
                         "(OSError: [Errno 28] No space left on device); nothing of it was kept and version 1 stays "
                         "active")
    with session_scope(runtime.database) as session:
        last = session.exec(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id.desc())).first()
        versions = session.exec(select(AdapterVersion)).all()
        active = adapter_service.active_version(session=session, task=get_task(session=session, name="notes"),
                                                user=get_user(session=session, name="john"))
    assert (last.level, last.message) == ("error", f"failed: {job.error}")
    assert [(v.version, v.is_active) for v in versions] == [(1, True)]
    assert active.version == 1
    assert sorted(p.name for p in (root / key).iterdir()) == ["v1"]  # no half-written version 2
    assert LocalAdapterStore(root).load(key, 1).labels == ["personal", "work"]  # still loads, whole
