"""The FastAPI application: ``create_app()`` builds it from settings (``localize serve`` runs it with uvicorn)."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from alembic.script import ScriptDirectory
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from localize.api.errors import BodySizeLimitMiddleware, Problem, install_error_handlers
from localize.api.routes import adapters, health, jobs, labels, predictions, tasks, users
from localize.api.schemas import BulkLabelsUpload, LabelsUpload
from localize.db.session import alembic_config
from localize.errors import ConfigurationError
from localize.runtime import Runtime
from localize.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Personal text classification: one frozen base model (all-MiniLM-L6-v2) and a tiny adapter per user, trained on
that user's own labels, so the same text can get a different label for each user.

Upload labels, queue a training job (a worker runs it), then predict. Every route except `/health` and `/ready`
needs `Authorization: Bearer <key>`: the admin key, or a user's key, which reaches only that user's labels, jobs,
adapters and predictions. Errors are RFC 9457 problem details (`application/problem+json`).
"""

ROUTERS = (health.router, users.router, tasks.router, labels.router, jobs.router, adapters.router, predictions.router)
# Schemas that routes reference by hand (problem responses, upload bodies read without a FastAPI body parameter).
EXTRA_SCHEMAS = (Problem, LabelsUpload, BulkLabelsUpload)


def _version() -> str:
    try:
        return version("localize")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.admin_key:
        raise ConfigurationError(
            "no admin key: set LOCALIZE_ADMIN_KEY (or run `localize serve`, which generates one into "
            f"{settings.home}/admin_key); the API refuses to start without one"
        )
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.upgrade_database()  # Alembic owns the schema
        app.state.schema_head = ScriptDirectory.from_config(
            alembic_config(settings.resolved_database_url)
        ).get_current_head()
        logger.info("database at revision %s", app.state.schema_head)
        yield
        runtime.database.dispose()

    app = FastAPI(title="localize", description=DESCRIPTION, version=_version(), lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    for router in ROUTERS:
        app.include_router(router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        _, definitions = models_json_schema([(model, "validation") for model in EXTRA_SCHEMAS],
                                            ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, definition in definitions.get("$defs", {}).items():
            components.setdefault(name, definition)
        app.openapi_schema = schema
    return app.openapi_schema
