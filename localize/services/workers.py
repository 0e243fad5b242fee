"""Training worker processes: each records a heartbeat while it lives, idle or training, so a supervisor and
``/ready`` can tell a live worker from a dead or hung one."""
from __future__ import annotations

import os
import socket
from datetime import datetime

from sqlmodel import Session

from localize.db.models import WorkerHeartbeat, WorkerPublic, aware, utcnow


def record_heartbeat(*, session: Session, worker_id: str, job_id: int | None = None) -> None:
    """Creates or refreshes this worker's row (only the worker itself writes it, so no two writers race)."""
    row = session.get(WorkerHeartbeat, worker_id)
    now = utcnow()
    if row is None:
        row = WorkerHeartbeat(id=worker_id, host=socket.gethostname()[:255], pid=os.getpid(), started_at=now)
    row.heartbeat_at, row.job_id, row.stopped_at = now, job_id, None
    session.add(row)
    session.commit()


def record_stopped(*, session: Session, worker_id: str) -> None:
    row = session.get(WorkerHeartbeat, worker_id)
    if row is not None:
        row.stopped_at, row.job_id = utcnow(), None
        session.add(row)
        session.commit()


def heartbeat_age(row: WorkerHeartbeat, now: datetime | None = None) -> float:
    return ((now or utcnow()) - aware(row.heartbeat_at)).total_seconds()


def worker_public(
    *, session: Session, worker_id: str, stale_after_seconds: float, running: bool = True, restarts: int = 0,
    last_exit: str | None = None,
) -> WorkerPublic:
    """A worker's state as ``/ready`` reports it: alive when its process runs (``running``, as its supervisor
    sees it) and its last heartbeat is fresher than ``stale_after_seconds``."""
    session.expire_all()
    row = session.get(WorkerHeartbeat, worker_id)
    age = None if row is None else heartbeat_age(row)
    alive = running and row is not None and row.stopped_at is None and age is not None and age < stale_after_seconds
    return WorkerPublic(id=worker_id, pid=None if row is None else row.pid, job_id=None if row is None else row.job_id,
                        heartbeat_at=None if row is None else aware(row.heartbeat_at),
                        heartbeat_age_seconds=None if age is None else round(age, 3), alive=alive,
                        restarts=restarts, last_exit=last_exit)
