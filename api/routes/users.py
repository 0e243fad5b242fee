"""Users and their API keys (admin only)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from localize.api.deps import AdminOnly, JsonBody, SessionDep, UserName
from localize.api.errors import problem_responses
from localize.api.schemas import ApiKeyPublic, UserCreate, UserPublic, UsersPublic
from localize.api.validation import JsonRoute, Offset
from localize.services import tasks as task_service
from localize.services import users as user_service

router = APIRouter(route_class=JsonRoute, prefix="/users", tags=["users"], dependencies=[AdminOnly],
                   responses=problem_responses(401, 403))


@router.post("", response_model=UserPublic, status_code=status.HTTP_201_CREATED,
             responses=problem_responses(409, 422), dependencies=[JsonBody])
def create_user(body: UserCreate, session: SessionDep) -> UserPublic:
    """Create a user."""
    return UserPublic.model_validate(user_service.create_user(session=session, name=body.name))


@router.get("", response_model=UsersPublic, responses=problem_responses(404, 422))
def list_users(
    session: SessionDep,
    task: Annotated[str | None, Query(description="Only users with labels in this task.")] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> UsersPublic:
    """List users, by name."""
    task_id = None if task is None else task_service.get_task(session=session, name=task).id
    rows, count = user_service.list_users(session=session, task_id=task_id, offset=offset, limit=limit)
    return UsersPublic(data=[UserPublic.model_validate(row) for row in rows], count=count)


@router.post("/{user}/keys", response_model=ApiKeyPublic, status_code=status.HTTP_201_CREATED,
             responses=problem_responses(404, 422))
def issue_key(user: UserName, session: SessionDep) -> ApiKeyPublic:
    """Issue a new API key for a user (shown once; the previous key stops working)."""
    row = user_service.get_user(session=session, name=user)
    return ApiKeyPublic(user=row.name, api_key=user_service.issue_api_key(session=session, user=row))
