"""The one place where errors become HTTP responses: RFC 9457 problem details (``application/problem+json``).

    LocalizeError (localize.errors)       HTTP
    ├── NotFoundError                     404 not-found
    │   └── NoAdapterError                404 no-adapter
    ├── ConflictError                     409 conflict
    ├── ValidationError                   422 validation-error   (+ ``errors``: per row / field)
    │   ├── PayloadTooLargeError          413 payload-too-large
    │   └── MalformedJsonError            400 malformed-json     (not UTF-8, not JSON, nested too deep)
    ├── PermissionDeniedError             403 forbidden
    ├── AdapterError                      503 adapter-unavailable
    └── ConfigurationError                500 configuration-error
    RequestValidationError (FastAPI)      422 validation-error, or 400 malformed-json for a body that is not JSON
    MalformedBody (api.validation)        400 malformed-json: a MalformedJsonError met in FastAPI's body reader
    HTTPException (401, 405, 413, 415..)  its own status, headers kept (401 carries ``WWW-Authenticate: Bearer``)
    sqlalchemy IntegrityError             409 conflict (a concurrent writer won a race, a row still referenced)
    OverflowError, sqlalchemy DataError   422 validation-error: a value the database cannot hold (an integer of
                                          2^63 or more on a route that forgot its bound), never a 500
    sqlalchemy OperationalError & co.     503 database-unavailable + Retry-After (unreachable, connection dropped)
    anything else                         500 internal-error, details only in the server log

Services raise domain errors and know nothing of HTTP; routes and dependencies raise domain errors or, for
purely HTTP matters (no key, wrong content type, body too large), ``HTTPException``.
"""
from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, DisconnectionError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localize.errors import (
    AdapterError,
    ConfigurationError,
    ConflictError,
    LocalizeError,
    NoAdapterError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ValidationError,
)
from localize.api.validation import MalformedBody
from localize.validation import MAX_DB_INT, MalformedJsonError

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# Relative URI references: a client resolves them against the API's own address.
PROBLEM_TYPE_BASE = "/problems/"

# Most specific first is not needed: the lookup walks each error's MRO.
DOMAIN_ERRORS: dict[type[LocalizeError], tuple[int, str, str]] = {
    NoAdapterError: (404, "no-adapter", "No trained adapter"),
    NotFoundError: (404, "not-found", "Not found"),
    ConflictError: (409, "conflict", "Conflict"),
    PayloadTooLargeError: (413, "payload-too-large", "Payload too large"),
    MalformedJsonError: (400, "malformed-json", "Malformed JSON"),
    ValidationError: (422, "validation-error", "Invalid input"),
    PermissionDeniedError: (403, "forbidden", "Forbidden"),
    AdapterError: (503, "adapter-unavailable", "Adapter cannot be served"),
    ConfigurationError: (500, "configuration-error", "Server misconfigured"),
}


class Problem(BaseModel):
    """An RFC 9457 problem details object."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "/problems/no-adapter",
                    "title": "No trained adapter",
                    "status": 404,
                    "detail": "user 'john' has no trained adapter for task 'gold-sentiment'; upload labels and "
                    "train one",
                    "instance": "/tasks/gold-sentiment/users/john/predict",
                },
                {
                    "type": "/problems/validation-error",
                    "title": "Invalid input",
                    "status": 422,
                    "detail": "no label row was accepted: line 2: label 'bullish' is not one of task "
                    "'gold-sentiment''s labels ['negative', 'neutral', 'positive']",
                    "instance": "/tasks/gold-sentiment/users/john/labels",
                    "errors": [{"line": 2, "message": "label 'bullish' is not one of task 'gold-sentiment''s "
                                                      "labels ['negative', 'neutral', 'positive']"}],
                },
            ]
        }
    )

    type: str = Field(description="A URI reference naming the kind of problem, e.g. /problems/no-adapter.")
    title: str = Field(description="Short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong in this request, naming the bad thing.")
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Per-row or per-field problems: {line, message} or {loc, field, message, type}."
    )


def problem_response(
    request: Request | None,
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    errors: list[Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
    if errors:
        body["errors"] = jsonable_encoder(errors)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _slug(status: int) -> str:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "http-error"
    return phrase.lower().replace("'", "").replace(" ", "-")


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def problem_for_status(request: Request | None, status: int, detail: str, *, headers: dict[str, str] | None = None,
                       errors: list[Any] | None = None) -> JSONResponse:
    """A problem named after its HTTP status (for HTTP-level errors with no domain error behind them)."""
    slug, title = _slug(status), _title(status)
    if status == 413:
        slug, title = DOMAIN_ERRORS[PayloadTooLargeError][1:]
    if status == 403:
        slug, title = DOMAIN_ERRORS[PermissionDeniedError][1:]
    return problem_response(request, status, slug, title, detail, errors=errors, headers=headers)


# -- handlers -----------------------------------------------------------------------------------------------------
async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LocalizeError)
    status, slug, title = 500, "internal-error", "Internal error"
    for cls in type(exc).__mro__:
        if cls in DOMAIN_ERRORS:
            status, slug, title = DOMAIN_ERRORS[cls]
            break
    if status >= 500:
        logger.error("%s on %s %s: %s", type(exc).__name__, request.method, request.url.path, exc)
    errors = exc.errors if isinstance(exc, ValidationError) else None
    return problem_response(request, status, slug, title, str(exc), errors=errors)


def _json_position(document: Any, position: int) -> tuple[int, int]:
    if isinstance(document, bytes):
        document = document.decode("utf-8", errors="replace")
    if not isinstance(document, str):
        return 1, position + 1
    line = document.count("\n", 0, position) + 1
    column = position - (document.rfind("\n", 0, position) + 1) + 1
    return line, column


async def _request_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    for problem in problems:
        if problem.get("type") == "json_invalid":
            loc = problem.get("loc", ())
            position = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else 0
            line, column = _json_position(exc.body, position)
            reason = (problem.get("ctx") or {}).get("error", problem.get("msg", "JSON decode error"))
            return problem_response(
                request, 400, "malformed-json", "Malformed JSON",
                f"request body is not valid JSON: {reason} at line {line} column {column} (char {position})",
                errors=[{"loc": ["body"], "line": line, "column": column, "position": position, "message": reason}],
            )
    errors = []
    for problem in problems:
        loc = [part for part in problem.get("loc", ())]
        message = problem.get("msg", "").removeprefix("Value error, ")  # pydantic's prefix for a validator's own
        errors.append({"loc": loc, "field": ".".join(str(part) for part in loc), "message": message,
                       "type": problem.get("type", "")})
    shown = "; ".join(f"{error['field']}: {error['message']}" for error in errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return problem_response(request, 422, "validation-error", "Invalid input", f"invalid request: {shown}{more}",
                            errors=errors)


async def _http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}"
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        # Starlette names only the methods of the first route that matched the path; a path served by several
        # routes (GET and DELETE /tasks/{task}) allows all of theirs.
        headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {headers['Allow']}"
    return problem_for_status(request, exc.status_code, detail, headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """The methods some route fully matches for this path (asked of the router, which knows nested routers)."""
    allowed = []
    for method in ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return allowed


async def _malformed_body(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MalformedBody)
    return await _domain_error(request, exc.error)


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("integrity error on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(request, 409, "conflict", "Conflict",
                            "the request conflicts with stored data: the database refused it "
                            "(a concurrent write, or rows that still refer to what it changes)")


# Seconds a client should wait before retrying a request the database could not serve.
DATABASE_RETRY_AFTER_SECONDS = 1


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """The database could not be reached or dropped the connection (a restart, a failover, a full pool). The
    request's transaction was rolled back (or, if the connection dropped just as it committed, stored whole), so
    the client may send it again: uploads are upserts, and a retry stores each label once."""
    logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(request, 503, "database-unavailable", "Database unavailable",
                            "the database could not complete this request (it is unreachable or dropped the "
                            f"connection); retry in {DATABASE_RETRY_AFTER_SECONDS} s",
                            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})


async def _database_range_error(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("value out of the database's range on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(request, 422, "validation-error", "Invalid input",
                            f"a value in this request is beyond what the database can store (integers must lie "
                            f"within {-MAX_DB_INT - 1}..{MAX_DB_INT})")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, 500, "internal-error", "Internal error",
                            "the server failed to handle this request; the details are in its log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LocalizeError, _domain_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(MalformedBody, _malformed_body)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(OverflowError, _database_range_error)
    app.add_exception_handler(DataError, _database_range_error)
    for error in (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError):
        app.add_exception_handler(error, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem responses a route can give."""
    descriptions = {
        400: "Malformed JSON body.",
        401: "No API key, or an unknown one.",
        403: "A user key on an admin-only route.",
        404: "The resource does not exist (or belongs to another user).",
        409: "The request clashes with stored state.",
        413: "Body or batch over its limit.",
        415: "Unsupported content type.",
        422: "Invalid input; `errors` names each bad row or field.",
        429: "Over this key's rate limit (LOCALIZE_RATE_LIMIT_PER_SECOND); `Retry-After` says when to retry.",
        503: "Not ready, or a stored adapter cannot be served.",
    }
    return {
        status: {
            "description": descriptions.get(status, _title(status)),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


# -- request body limit -------------------------------------------------------------------------------------------
class BodySizeLimitMiddleware:
    """Refuses bodies over ``max_bytes``: at once when ``Content-Length`` says so, else as soon as the bytes
    actually received pass the limit (chunked or lying clients)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes


    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > self.max_bytes:
            response = problem_for_status(
                Request(scope), 413, f"request body of {int(declared)} bytes (Content-Length) is over the limit of "
                           f"{self.max_bytes} bytes")
            await response(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body reader untouched; the handler above renders it.
                    raise HTTPException(413, detail=f"request body is over the limit of {self.max_bytes} bytes "
                                                    f"({received} bytes received so far)")
            return message

        await self.app(scope, receive_within_limit, send)
