"""Liveness and readiness; no key needed."""
from __future__ import annotations

from alembic.runtime.migration import MigrationContext
from fastapi import APIRouter, HTTPException, Request
from sqlalchemy.exc import SQLAlchemyError

from localize.api.deps import RuntimeDep
from localize.api.errors import problem_responses
from localize.api.schemas import HealthPublic, ReadyPublic

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthPublic)
def health() -> HealthPublic:
    """Liveness: the process answers."""
    return HealthPublic()


@router.get("/ready", response_model=ReadyPublic, responses=problem_responses(503))
def ready(request: Request, runtime: RuntimeDep) -> ReadyPublic:
    """Readiness: the database answers and its schema is at the migration head."""
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
    # The engine (and with it the base model) is built on the first prediction.
    return ReadyPublic(schema_revision=revision, base_model_loaded=runtime.base_loaded)
