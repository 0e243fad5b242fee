"""A user's adapter versions in a task: list, inspect, activate (rollback) and delete."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlmodel import Session

from localize.api.deps import OwnerDep, RuntimeDep, SessionDep, TaskDep
from localize.api.errors import problem_responses
from localize.api.schemas import AdapterVersionPublic, AdapterVersionsPublic, DeletedPublic
from localize.api.validation import JsonRoute
from localize.db.models import AdapterVersion, Task, User
from localize.services import adapters as adapter_service
from localize.validation import MAX_ID

router = APIRouter(route_class=JsonRoute, prefix="/tasks/{task}/users/{user}/adapters", tags=["adapters"],
                   responses=problem_responses(401, 404, 422))

Version = Annotated[int, Path(ge=1, le=MAX_ID, description="The adapter version number (1, 2, ...).",
                             examples=[2])]


def _public(rows: list[AdapterVersion], task: Task, user: User, session: Session) -> list[AdapterVersionPublic]:
    priors = adapter_service.prior_versions(session=session, rows=rows)
    return [AdapterVersionPublic.model_validate({**row.model_dump(), "task": task.name, "user": user.name,
                                                 "prior_version": priors.get(row.id)}) for row in rows]


@router.get("", response_model=AdapterVersionsPublic)
def list_versions(task: TaskDep, owner: OwnerDep, session: SessionDep) -> AdapterVersionsPublic:
    """List a user's adapter versions, oldest first; `is_active` marks the one that serves, `prior_version` the
    task prior version a head reads."""
    rows = adapter_service.list_versions(session=session, task=task, user=owner)
    return AdapterVersionsPublic(data=_public(rows, task, owner, session), count=len(rows))


@router.get("/{version}", response_model=AdapterVersionPublic)
def get_version(task: TaskDep, owner: OwnerDep, version: Version, session: SessionDep) -> AdapterVersionPublic:
    """One adapter version, with its metrics and training arguments."""
    row = adapter_service.get_version(session=session, task=task, user=owner, version=version)
    return _public([row], task, owner, session)[0]


@router.post("/{version}/activate", response_model=AdapterVersionPublic, responses=problem_responses(409))
def activate_version(task: TaskDep, owner: OwnerDep, version: Version, session: SessionDep,
                     runtime: RuntimeDep) -> AdapterVersionPublic:
    """Make a version the one that serves (activating an older version is a rollback); its files are checked first."""
    row = adapter_service.activate_version(session=session, store=runtime.store, task=task, user=owner,
                                           version=version)
    return _public([row], task, owner, session)[0]


@router.delete("/{version}", response_model=DeletedPublic, responses=problem_responses(409))
def delete_version(task: TaskDep, owner: OwnerDep, version: Version, session: SessionDep,
                   runtime: RuntimeDep) -> DeletedPublic:
    """Delete an inactive version and its stored files; the active version cannot be deleted."""
    adapter_service.delete_version(session=session, store=runtime.store, task=task, user=owner, version=version)
    return DeletedPublic(deleted=1)
