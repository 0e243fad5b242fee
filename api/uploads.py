"""Reading label uploads: a JSON body, a raw JSONL or CSV body, or a multipart file.

The body is read here (async, bounded by the body-size middleware); parsing is left to
:func:`localize.labels_io.parse_labels`, so the API accepts exactly the files the CLI imports.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pydantic
from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import UploadFile

from localize.api.deps import PrincipalDep
from localize.api.schemas import BulkLabelsUpload, LabelsUpload
from localize.errors import ValidationError
from localize.labels_io import LabelRow, ParseResult, RowError, detect_format, parse_labels
from localize.settings import Settings
from localize.validation import parse_json

ACCEPTED = "application/json, application/jsonl, application/x-ndjson, text/csv or multipart/form-data (field 'file')"


@dataclass(frozen=True)
class UploadBody:
    fmt: str  # "json" (the API's own JSON shape), or a label file format: "jsonl" or "csv"
    data: bytes


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


async def read_upload_body(request: Request, principal: PrincipalDep) -> UploadBody:  # noqa: ARG001
    """The upload's bytes and format, from its content type (multipart: the file's name and type)."""
    # ``principal``: a body is only read for an authenticated caller.
    media_type = _media_type(request.headers.get("content-type"))
    if not media_type:
        raise HTTPException(415, detail=f"missing Content-Type; send {ACCEPTED}")
    if media_type == "application/json" or media_type.endswith("+json"):
        return UploadBody("json", await request.body())
    if media_type == "multipart/form-data":
        form = await request.form()
        try:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise ValidationError("multipart upload needs a file field named 'file'")
            data = await upload.read()
            return UploadBody(detect_format(upload.filename, upload.content_type, data[:4096]), data)
        finally:
            await form.close()
    try:
        fmt = detect_format(None, media_type, b"")
    except ValidationError:
        raise HTTPException(415, detail=f"Content-Type {media_type!r} is not supported; send {ACCEPTED}") from None
    return UploadBody(fmt, await request.body())


UploadBodyDep = Annotated[UploadBody, Depends(read_upload_body)]


def _json_payload(data: bytes, model: type[pydantic.BaseModel]) -> Any:
    value = parse_json(data)  # the one JSON reader: names invalid UTF-8, bad JSON and too-deep nesting
    try:
        return model.model_validate(value)
    except pydantic.ValidationError as error:
        raise RequestValidationError(
            [{**problem, "loc": ("body", *problem["loc"])} for problem in error.errors()], body=value
        ) from None


def parse_user_upload(body: UploadBody, *, user: str, settings: Settings) -> ParseResult:
    """Rows of a per-user upload; a row naming another user is rejected, one naming none is the path user's."""
    if body.fmt == "json":
        payload: LabelsUpload = _json_payload(body.data, LabelsUpload)
        parsed = ParseResult(rows=[
            LabelRow(line=index, user=row.user or user, text=row.text, label=row.label, item=row.item, split=row.split)
            for index, row in enumerate(payload.labels, start=1)
        ])
    else:
        parsed = parse_labels(body.data, body.fmt, max_text_chars=settings.max_text_chars,
                              max_rows=settings.max_batch_rows, default_user=user)
    rows, errors = [], list(parsed.errors)
    for row in parsed.rows:
        if row.user != user:
            message = f"row is for user {row.user!r}, this upload is for user {user!r}"
            errors.append(RowError(line=row.line, message=message))
        else:
            rows.append(row)
    return ParseResult(rows=rows, errors=errors)


def parse_bulk_upload(body: UploadBody, *, settings: Settings) -> ParseResult:
    """Rows of a bulk upload: each names its user."""
    if body.fmt == "json":
        payload: BulkLabelsUpload = _json_payload(body.data, BulkLabelsUpload)
        return ParseResult(rows=[
            LabelRow(line=index, user=row.user, text=row.text, label=row.label, item=row.item, split=row.split)
            for index, row in enumerate(payload.labels, start=1)
        ])
    return parse_labels(body.data, body.fmt, max_text_chars=settings.max_text_chars, max_rows=settings.max_batch_rows)
