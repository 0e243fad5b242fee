"""Liveness and readiness; no key needed."""
from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from fastapi import APIRouter, HTTPException, Request
from sqlalchemy.exc import SQLAlchemyError

from localize.api.deps import RuntimeDep
from localize.api.errors import problem_responses
from localize.api.schemas import HealthPublic, ReadyPublic
from localize.db.models import WorkerPublic
from localize.api.validation import JsonRoute

router = APIRouter(route_class=JsonRoute, tags=["health"])


@router.get("/health", response_model=HealthPublic)
def health() -> HealthPublic:
    """Liveness: the process answers."""
    return HealthPublic()


@router.get("/ready", response_model=ReadyPublic, responses=problem_responses(503))
def ready(request: Request, runtime: RuntimeDep) -> ReadyPublic:
    """Readiness: the database answers, its schema is at the migration head, and the training worker this server
    supervises (if any) is alive with a fresh heartbeat."""
    try:
        with runtime.database.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as error:
        raise HTTPException(503, detail=f"database is unreachable: {type(error).__name__}") from None
    head = getattr(request.app.state, "schema_head", None)  # set by the lifespan; absent if it never ran
    if head is None:
        raise HTTPException(503, detail="server is still starting: the schema head is not known yet")
    if revision != head:
        raise HTTPException(503, detail=f"database schema is at revision {revision!r}, this server needs {head!r}")
    worker = None
    supervisor = getattr(request.app.state, "worker_supervisor", None)  # set by `localize serve`
    if supervisor is not None:
        try:
            worker = supervisor.status()
        except SQLAlchemyError as error:
            raise HTTPException(503, detail=f"database is unreachable: {type(error).__name__}") from None
        if not worker.alive:
            raise HTTPException(503, detail=_worker_problem(worker, runtime.settings.worker_dead_after_seconds))
    # The engine (and with it the base model) is built on the first prediction.
    return ReadyPublic(schema_revision=revision, base_model_loaded=runtime.base_loaded, worker=worker)


def _worker_problem(worker: WorkerPublic, stale_after: float) -> str:
    if worker.heartbeat_age_seconds is not None and worker.heartbeat_age_seconds >= stale_after:
        return (f"the training worker {worker.id} sent its last heartbeat {worker.heartbeat_age_seconds:.0f} s ago "
                f"(stale after {stale_after:.0f} s)")
    if worker.last_exit is not None:
        return f"the training worker died ({worker.last_exit}) and is being restarted ({worker.restarts} restarts)"
    return "the training worker is starting: it has not sent a heartbeat yet"
