"""Labels: per-user uploads (JSON, JSONL, CSV or a multipart file), listing and deletion; an admin bulk upload."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlmodel import Session

from localize.api.deps import AdminOnly, OwnerDep, RuntimeDep, SessionDep, TaskDep, UploadUserDep
from localize.api.errors import problem_responses
from localize.api.schemas import (
    BulkLabelsUpload,
    DeletedPublic,
    LabelPublic,
    LabelsPublic,
    LabelsUpload,
    UploadReportPublic,
)
from localize.api.uploads import UploadBodyDep, parse_bulk_upload, parse_user_upload
from localize.api.validation import JsonRoute, Offset
from localize.db.models import Task
from localize.errors import ValidationError
from localize.labels_io import ParseResult
from localize.runtime import Runtime
from localize.services import labels as label_service
from localize.services import limits
from localize.validation import MAX_ID

router = APIRouter(route_class=JsonRoute, prefix="/tasks/{task}", tags=["labels"],
                   responses=problem_responses(401, 404, 422))

_JSONL_EXAMPLE = '{"text": "gold soars 3% as the dollar slides", "label": "positive"}\n' \
                 '{"text": "Brent slips below $70", "label": "negative", "item": "t-18"}\n'
_CSV_EXAMPLE = 'text,label,item\n"gold soars 3% as the dollar slides",positive,t-17\n' \
               'Brent slips below $70,negative,t-18\n'
_BULK_JSONL_EXAMPLE = '{"user": "john", "text": "gold soars 3%", "label": "positive"}\n' \
                      '{"user": "jane", "text": "gold soars 3%", "label": "negative"}\n'
_BULK_CSV_EXAMPLE = "user,text,label\njohn,gold soars 3%,positive\njane,gold soars 3%,negative\n"


def _upload_body_openapi(model: type, jsonl: str, csv_text: str) -> dict[str, Any]:
    """The request body of an upload route: FastAPI cannot infer one from a body read by hand."""
    file_schema = {"type": "object", "properties": {"file": {"type": "string", "format": "binary",
                                                             "description": "A .jsonl or .csv label file."}},
                   "required": ["file"]}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"},
                                     "example": model.model_config["json_schema_extra"]["examples"][0]},
                "application/jsonl": {"schema": {"type": "string"}, "example": jsonl},
                "application/x-ndjson": {"schema": {"type": "string"}, "example": jsonl},
                "text/csv": {"schema": {"type": "string"}, "example": csv_text},
                "multipart/form-data": {"schema": file_schema,
                                        "example": {"file": "(a .jsonl or .csv file like the text/csv example)"}},
            },
        }
    }


def _store(session: Session, runtime: Runtime, task: Task, parsed: ParseResult) -> UploadReportPublic:
    report = label_service.upsert_labels(
        session=session, task=task, rows=parsed.rows, errors=parsed.errors,
        max_text_chars=runtime.settings.max_text_chars, max_rows=runtime.settings.max_batch_rows,
    )
    body = report.to_dict()
    if not report.accepted:
        errors = body["errors"]
        if not errors:
            raise ValidationError("the upload holds no label rows")
        shown = "; ".join(f"line {error['line']}: {error['message']}" for error in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ValidationError(f"no label row was accepted: {shown}{more}", errors=errors)
    return UploadReportPublic.model_validate(body)


@router.post("/users/{user}/labels", response_model=UploadReportPublic,
             responses=problem_responses(400, 413, 415, 422),
             openapi_extra=_upload_body_openapi(LabelsUpload, _JSONL_EXAMPLE, _CSV_EXAMPLE))
def upload_labels(task: TaskDep, user: UploadUserDep, body: UploadBodyDep, session: SessionDep,
                  runtime: RuntimeDep) -> UploadReportPublic:
    """Upload a user's labels: good rows are stored (a re-upload updates a label), bad ones reported by line."""
    parsed = parse_user_upload(body, user=user, settings=runtime.settings)
    rows, over_quota = limits.apply_label_quota(session=session, task=task, rows=parsed.rows,
                                                limit=runtime.settings.max_labels_per_user,
                                                max_text_chars=runtime.settings.max_text_chars)
    return _store(session, runtime, task, ParseResult(rows=rows, errors=[*parsed.errors, *over_quota]))


@router.post("/labels", response_model=UploadReportPublic, responses=problem_responses(400, 403, 413, 415, 422),
             dependencies=[AdminOnly],
             openapi_extra=_upload_body_openapi(BulkLabelsUpload, _BULK_JSONL_EXAMPLE, _BULK_CSV_EXAMPLE))
def upload_bulk_labels(task: TaskDep, body: UploadBodyDep, session: SessionDep,
                       runtime: RuntimeDep) -> UploadReportPublic:
    """Upload labels of many users at once, each row naming its user (admin)."""
    return _store(session, runtime, task, parse_bulk_upload(body, settings=runtime.settings))


@router.get("/users/{user}/labels", response_model=LabelsPublic, responses=problem_responses(422))
def list_labels(
    task: TaskDep,
    owner: OwnerDep,
    session: SessionDep,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="Rows per page.")] = 100,
) -> LabelsPublic:
    """List a user's labels in a task, oldest first, one page at a time."""
    rows, count = label_service.list_labels(session=session, task=task, user=owner, offset=offset, limit=limit)
    return LabelsPublic(
        data=[LabelPublic(id=label.id, user=owner.name, task=task.name, text=text, label=label.label, item=label.item,
                          split=label.split, updated_at=label.updated_at) for label, text in rows],
        count=count,
    )


LabelId = Annotated[int, Path(ge=1, le=MAX_ID, description="The label's id.")]


@router.delete("/users/{user}/labels/{label_id}", response_model=DeletedPublic)
def delete_label(task: TaskDep, owner: OwnerDep, label_id: LabelId,
                 session: SessionDep) -> DeletedPublic:
    """Delete one of a user's labels (and its text, if no other label or text pool holds it)."""
    return DeletedPublic(deleted=label_service.delete_labels(session=session, task=task, user=owner,
                                                             label_ids=[label_id]))


@router.delete("/users/{user}/labels", response_model=DeletedPublic)
def delete_labels(task: TaskDep, owner: OwnerDep, session: SessionDep) -> DeletedPublic:
    """Delete all of a user's labels in a task (and their texts that no other label or text pool holds)."""
    return DeletedPublic(deleted=label_service.delete_labels(session=session, task=task, user=owner))
