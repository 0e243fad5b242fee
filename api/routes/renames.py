"""Renaming tasks, users and labels, and deleting users and labels (admin): the fixes for a typo."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, Field

from localize.api.deps import AdminOnly, JsonBody, RuntimeDep, SessionDep, TaskDep, UserName
from localize.api.errors import problem_responses
from localize.api.schemas import TaskPublic, UserPublic
from localize.api.validation import JsonRoute
from localize.services import renames
from localize.services import users as user_service

router = APIRouter(route_class=JsonRoute, tags=["renames"], dependencies=[AdminOnly],
                   responses=problem_responses(401, 403, 404, 422))

LabelName = Annotated[str, Path(description="A label of the task's label set.", examples=["positive"])]


class Rename(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "gold-sentiment"}]})

    name: str = Field(min_length=1, max_length=128, description="The new name.")


class UserDeletionPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"user": "jon", "labels": 120, "adapter_versions": 2, "jobs": 3, "texts": 15, "files_not_removed": []}]})

    user: str
    labels: int = Field(description="Labels removed, over every task.")
    adapter_versions: int = Field(description="Adapter versions removed, files included.")
    jobs: int = Field(description="Training jobs removed, with their events.")
    texts: int = Field(description="Texts removed because no other user's label and no task's text pool named them.")
    files_not_removed: list[str] = Field(description="Stored versions whose files could not be removed.")


class LabelEditPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"task": "gold-sentiment", "label": "postive", "new_label": "positive",
         "labels": ["negative", "neutral", "positive"], "rows": 4, "users": ["jane"]}]})

    task: str
    label: str
    new_label: str | None = Field(description="The label's new name; null when it was deleted.")
    labels: list[str] = Field(description="The task's label set afterwards.")
    rows: int = Field(description="Stored labels rewritten (rename) or removed (delete).")
    users: list[str] = Field(description="Users whose labels changed: stale until retrained.")


@router.post("/tasks/{task}/rename", response_model=TaskPublic, responses=problem_responses(409),
             dependencies=[JsonBody])
def rename_task(task: TaskDep, body: Rename, session: SessionDep) -> TaskPublic:
    """Rename a task; its labels, adapters and jobs stay with it."""
    return TaskPublic.model_validate(renames.rename_task(session=session, task=task, name=body.name))


@router.patch("/users/{user}", response_model=UserPublic, responses=problem_responses(409), dependencies=[JsonBody])
def rename_user(user: UserName, body: Rename, session: SessionDep) -> UserPublic:
    """Rename a user; their key, labels, adapters and jobs stay with them."""
    row = user_service.get_user(session=session, name=user)
    return UserPublic.model_validate(renames.rename_user(session=session, user=row, name=body.name))


@router.delete("/users/{user}", response_model=UserDeletionPublic, responses=problem_responses(409))
def delete_user(user: UserName, session: SessionDep, runtime: RuntimeDep) -> UserDeletionPublic:
    """Delete a user with their key, labels, adapter versions (files included) and jobs, in every task, and the
    texts no one else labelled and no task's pool holds; refused while one of their jobs is running."""
    row = user_service.get_user(session=session, name=user)
    return UserDeletionPublic.model_validate(renames.delete_user(session=session, runtime=runtime, user=row).to_dict())


@router.patch("/tasks/{task}/label-set/{label}", response_model=LabelEditPublic, dependencies=[JsonBody])
def rename_label(task: TaskDep, label: LabelName, body: Rename, session: SessionDep) -> LabelEditPublic:
    """Rename a label in the task's label set and in every stored label; renaming onto a label the set has merges
    the two. Users who had it become stale."""
    edit = renames.rename_label(session=session, task=task, label=label, new_label=body.name)
    return LabelEditPublic.model_validate(edit.to_dict())


@router.delete("/tasks/{task}/label-set/{label}", response_model=LabelEditPublic)
def delete_label(task: TaskDep, label: LabelName, session: SessionDep) -> LabelEditPublic:
    """Remove a label from the task's label set with every stored label that has it (at least two labels stay)."""
    return LabelEditPublic.model_validate(renames.delete_label(session=session, task=task, label=label).to_dict())
