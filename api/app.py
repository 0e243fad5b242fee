"""The FastAPI application: ``create_app()`` builds it from settings (``localize serve`` runs it with uvicorn)."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from localize import tracing
from localize.api import observability
from localize.admin_key import check_admin_key
from localize.api.errors import BodySizeLimitMiddleware, Problem, install_error_handlers
from localize.api.openapi import complete as complete_openapi
from localize.api.ratelimit import RateLimiter
from localize.api.routes import adapters, health, jobs, labels, predictions, tasks, users
from localize.api.routes import explain, queue, retraining, text_pool, webhooks
from localize.api.routes import renames
from localize.api.web import install_web
from localize.heap import freeze_long_lived_objects
from localize.api.schemas import BulkLabelsUpload, LabelsUpload
from localize.db.session import alembic_config
from localize.runtime import Runtime
from localize.services.lookups import ServingLookups
from localize.settings import Settings, get_settings

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Personal text classification: one frozen base model (all-MiniLM-L6-v2) and a tiny adapter per user, trained on
that user's own labels, so the same text can get a different label for each user.

Upload labels, queue a training job (a worker runs it), then predict. Every route except `/health` and `/ready`
needs `Authorization: Bearer <key>`: the admin key, or a user's key, which reaches only that user's labels, jobs,
adapters and predictions. Errors are RFC 9457 problem details (`application/problem+json`).
"""

ROUTERS = (health.router, users.router, tasks.router, labels.router, jobs.router, adapters.router, predictions.router,
           observability.router)
# The labelling loop behind the web app (api/web): text pool, queue, answers, retraining, explanations.
ROUTERS += (text_pool.router, queue.router, retraining.router, explain.router)
ROUTERS += (webhooks.router,)
ROUTERS += (renames.router,)  # admin renames and deletions of users and labels
# Schemas that routes reference by hand (problem responses, upload bodies read without a FastAPI body parameter).
EXTRA_SCHEMAS = (Problem, LabelsUpload, BulkLabelsUpload)


def _version() -> str:
    try:
        return version("localize")
    except PackageNotFoundError:
        return "0.0.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    check_admin_key(settings.admin_key)  # none, or shorter than 16 characters: the API refuses to start
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.upgrade_database()  # Alembic owns the schema
        app.state.schema_head = ScriptDirectory.from_config(
            alembic_config(settings.resolved_database_url)
        ).get_current_head()
        logger.info("database at revision %s", app.state.schema_head)
        if settings.engine_threads:  # process-wide; the training worker, another process, sets its own
            torch.set_num_threads(settings.engine_threads)
        tracing.configure(settings)  # nothing of OpenTelemetry is imported unless an endpoint is set
        tracing.instrument_database(runtime.database)
        metrics_server = None
        if settings.metrics_port is not None:
            from localize.metrics import start_metrics_server

            metrics_server = start_metrics_server(settings.metrics_port, settings.metrics_host, runtime.database)
        app.state.metrics_server = metrics_server
        sender = None
        if settings.webhook_sender:  # sends the deliveries any process wrote (the worker's included)
            from localize.services.webhooks import WebhookSender

            sender = WebhookSender(runtime.database, settings)
            sender.start()
        if settings.freeze_heap:  # what start-up built lives as long as the server
            freeze_long_lived_objects("start-up done")
        yield
        if sender is not None:
            sender.stop()
        if metrics_server is not None:
            metrics_server.shutdown()
            metrics_server.server_close()
        app.state.lookups.close()
        runtime.database.dispose()

    app = FastAPI(title="localize", description=DESCRIPTION, version=_version(), lifespan=lifespan)
    app.state.runtime = runtime
    app.state.lookups = ServingLookups(runtime.database)  # the hot prediction route's cache (api/serving_deps)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second) if settings.rate_limit_per_second else None
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    app.add_middleware(observability.ObservabilityMiddleware)  # outermost: it times and counts refused requests too
    for router in ROUTERS:
        app.include_router(router)
    install_web(app, settings.admin_key)  # the pages at / (api/web), outside the OpenAPI document
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
        app.openapi_schema = complete_openapi(schema, app.state.runtime.settings)
    return app.openapi_schema
