"""The API side of :mod:`localize.validation`: field types that state the rules in the OpenAPI document, and the
route class through which every JSON body is read by the one JSON parser.

- ``SafeText``: a string that can be stored and answered (no lone surrogate, no NUL); a bad value is a 422 naming
  the field, and the schema carries the rule as a ``pattern`` so clients (and fuzzers) know it.
- ``Offset``: a query offset within a signed 64-bit column (path ids state the same bound where they are declared).
- ``JsonRoute``: FastAPI reads JSON bodies with ``json.loads`` and turns any trouble (invalid UTF-8, nesting that
  exhausts recursion) into a bare 400 "There was an error parsing the body"; this route class reads them with
  :func:`localize.validation.parse_json` instead, so every JSON route answers the same named problem.
"""
from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import HTTPException, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import AfterValidator, Field

from localize.names import NAME_PATTERN
from localize.validation import (
    MAX_DB_INT,
    NONBLANK_TEXT_PATTERN,
    TEXT_PATTERN,
    MalformedJsonError,
    parse_json,
    text_problem,
)


def _check_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(f"the text {problem}")
    return value


# The pattern states the rule in the schema; the validator enforces it (pydantic's regex engine cannot match
# lone surrogates, so it must not be what checks them).
SafeText = Annotated[str, AfterValidator(_check_text), Field(json_schema_extra={"pattern": TEXT_PATTERN})]
# Text that must hold more than white space (a text to classify).
NonBlankText = Annotated[str, AfterValidator(_check_text), Field(json_schema_extra={"pattern": NONBLANK_TEXT_PATTERN})]
# The same rules stated but not enforced: upload rows are checked one by one, so a bad row is a row error.
StoredText = Annotated[str, Field(json_schema_extra={"pattern": TEXT_PATTERN})]
StoredNonBlankText = Annotated[str, Field(json_schema_extra={"pattern": NONBLANK_TEXT_PATTERN})]
StoredName = Annotated[str, Field(json_schema_extra={"pattern": NAME_PATTERN})]

Offset = Annotated[int, Query(ge=0, le=MAX_DB_INT, description="Rows to skip.")]


class MalformedBody(HTTPException):
    """Carries a :class:`MalformedJsonError` through FastAPI's body reader (which passes HTTPException on and
    flattens anything else into a bare 400); ``api.errors`` renders the domain error inside."""

    def __init__(self, error: MalformedJsonError) -> None:
        super().__init__(400, detail=str(error))
        self.error = error


class JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            try:
                self._json = parse_json(await self.body())
            except MalformedJsonError as error:
                raise MalformedBody(error) from None
        return self._json


class JsonRoute(APIRoute):
    """A route whose JSON body is read by :func:`localize.validation.parse_json`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def read_with_parse_json(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return read_with_parse_json
