"""The one place where errors become HTTP responses: RFC 9457 problem details (``application/problem+json``).

    LocalizeError (localize.errors)       HTTP
    ├── NotFoundError                     404 not-found
    │   └── NoAdapterError                404 no-adapter
    ├── ConflictError                     409 conflict
    ├── ValidationError                   422 validation-error   (+ ``errors``: per row / field)
    │   └── PayloadTooLargeError          413 payload-too-large
    ├── PermissionDeniedError             403 forbidden
    ├── AdapterError                      503 adapter-unavailable
    └── ConfigurationError                500 configuration-error
    RequestValidationError (FastAPI)      422 validation-error, or 400 malformed-json for a body that is not JSON
    HTTPException (401, 405, 413, 415..)  its own status, headers kept (401 carries ``WWW-Authenticate: Bearer``)
    sqlalchemy IntegrityError             409 conflict (a concurrent writer won a race, a row still referenced)
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
from sqlalchemy.exc import IntegrityError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
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
        errors.append({"loc": loc, "field": ".".join(str(part) for part in loc), "message": problem.get("msg", ""),
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
    return problem_for_status(request, exc.status_code, detail, headers=headers)


async def _integrity_error(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("integrity error on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(request, 409, "conflict", "Conflict",
                            "the request conflicts with stored data: the database refused it "
                            "(a concurrent write, or rows that still refer to what it changes)")


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return problem_response(request, 500, "internal-error", "Internal error",
                            "the server failed to handle this request; the details are in its log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LocalizeError, _domain_error)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    app.add_exception_handler(HTTPException, _http_exception)
    app.add_exception_handler(IntegrityError, _integrity_error)
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
