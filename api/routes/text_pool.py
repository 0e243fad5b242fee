"""A task's text pool: texts uploaded without labels for its users to label (admin), and its size."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from localize.api.deps import AdminOnly, RuntimeDep, SessionDep, TaskDep
from localize.api.errors import problem_responses
from localize.api.schemas import RowErrorPublic
from localize.api.uploads import UploadBodyDep
from localize.api.validation import JsonRoute
from localize.errors import ValidationError
from localize.services import text_pool
from localize.validation import parse_json

router = APIRouter(route_class=JsonRoute, prefix="/tasks/{task}/texts", tags=["text pool"], dependencies=[AdminOnly],
                   responses=problem_responses(401, 403, 404, 422))

_JSON_EXAMPLE = {"texts": [{"text": "gold soars 3% as the dollar slides", "item": "t-17"},
                           {"text": "Brent slips below $70"}]}


class PoolTextIn(BaseModel):
    text: str = Field(description="A text to label.")
    item: str | None = Field(default=None, description="Optional id of the text in your own data.")


class TextsUpload(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_JSON_EXAMPLE]})

    texts: list[PoolTextIn | str] = Field(description="Texts (or {text, item} objects) to add to the pool.")


class PoolUploadPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"accepted": 2, "added": 1, "already_in_pool": 1, "errors": [{"line": 3, "message": "field 'text' is empty"}]}
    ]})

    accepted: int = Field(description="Rows taken: added plus already in the pool.")
    added: int
    already_in_pool: int
    errors: list[RowErrorPublic] = Field(description="Rows refused, by line (JSON: by 1-based position).")


class PoolTextPublic(BaseModel):
    text_id: int
    text: str
    item: str | None


class PoolPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"data": [{"text_id": 7, "text": "Brent slips below $70", "item": None}], "count": 1,
         "summary": {"uploaded": 1, "labelled": 40, "total": 41}}
    ]})

    data: list[PoolTextPublic]
    count: int = Field(description="Uploaded pool texts in all.")
    summary: dict[str, int] = Field(description="uploaded; labelled: texts a user labelled; total: the union, "
                                    "which is what users are asked to label.")


def _json_records(data: bytes) -> list[tuple[int, dict | str]]:
    payload = parse_json(data)  # the one JSON reader: invalid UTF-8, bad JSON or deep nesting is a named 400
    texts = payload.get("texts") if isinstance(payload, dict) else None
    if not isinstance(texts, list):
        raise ValidationError('a JSON upload must be an object with a list "texts", e.g. '
                              '{"texts": ["first text", {"text": "second", "item": "t-2"}]}')
    return [(line, {"text": value} if isinstance(value, str) else value if isinstance(value, dict)
             else f"expected a string or an object with 'text', got {type(value).__name__}")
            for line, value in enumerate(texts, start=1)]


@router.post("", response_model=PoolUploadPublic, responses=problem_responses(400, 413, 415),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": {"$ref": "#/components/schemas/TextsUpload"},
                                      "example": _JSON_EXAMPLE},
                 "application/jsonl": {"schema": {"type": "string"},
                                       "example": '{"text": "Brent slips below $70"}\n'},
                 "text/csv": {"schema": {"type": "string"}, "example": "text,item\nBrent slips below $70,t-18\n"},
             }}})
def upload_texts(task: TaskDep, body: UploadBodyDep, session: SessionDep, runtime: RuntimeDep) -> PoolUploadPublic:
    """Add unlabelled texts to the task's pool (JSON, JSONL, CSV or a file); bad rows are reported by line."""
    settings = runtime.settings
    if body.fmt == "json":
        rows, errors = text_pool.parse_pool_records(_json_records(body.data), max_text_chars=settings.max_text_chars,
                                                    max_rows=settings.max_batch_rows)
    else:
        rows, errors = text_pool.parse_pool_file(body.data, body.fmt, max_text_chars=settings.max_text_chars,
                                                 max_rows=settings.max_batch_rows)
    report = text_pool.add_texts(session=session, task=task, rows=rows, errors=errors).to_dict()
    if not report["accepted"]:
        if not report["errors"]:
            raise ValidationError("the upload holds no texts")
        shown = "; ".join(f"line {error['line']}: {error['message']}" for error in report["errors"][:3])
        more = f" (and {len(report['errors']) - 3} more)" if len(report["errors"]) > 3 else ""
        raise ValidationError(f"no text was accepted: {shown}{more}", errors=report["errors"])
    return PoolUploadPublic.model_validate(report)


@router.get("", response_model=PoolPublic)
def list_texts(
    task: TaskDep,
    session: SessionDep,
    offset: Annotated[int, Query(ge=0, le=2**62, description="Rows to skip.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Rows per page.")] = 100,
) -> PoolPublic:
    """List the task's uploaded pool texts, oldest first, with the pool's size."""
    rows, count = text_pool.list_pool(session=session, task=task, offset=offset, limit=limit)
    return PoolPublic(data=[PoolTextPublic(text_id=row.text_id, text=body, item=row.item) for row, body in rows],
                      count=count, summary=text_pool.pool_summary(session=session, task=task))
