"""Request dependencies: the runtime, a database session, who is calling, and the path's task and user.

Access scheme, the same on every route:

- 401: no key, or a key that is neither the admin key nor a user's key;
- 403: a user key on an admin-only route;
- 404: a user key naming another user (or another user's job): to that key, other users do not exist.
"""
from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from localize.api.ratelimit import check_rate
from localize.db.models import Task, User
from localize.errors import NotFoundError, PermissionDeniedError
from localize.runtime import Runtime
from localize.services import tasks as task_service
from localize.services import users as user_service


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # async: FastAPI would run a plain def in a worker thread


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    with Session(runtime.database, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

bearer = HTTPBearer(auto_error=False, description="The admin key, or a user's API key (`POST /users/{user}/keys`).")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin (``user`` is None) or one user."""

    user: User | None
    is_admin: bool

    @property
    def scope_user(self) -> User | None:
        """The user whose resources this caller is limited to; None for the admin."""
        return None if self.is_admin else self.user


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def get_principal(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    if credentials is None or not credentials.credentials:
        raise _unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
    key = credentials.credentials
    admin_key = runtime.settings.admin_key
    if admin_key and hmac.compare_digest(key.encode("utf-8"), admin_key.encode("utf-8")):
        return Principal(user=None, is_admin=True)
    user = user_service.authenticate(session=session, key=key)
    if user is None:
        raise _unauthorized("invalid API key")
    check_rate(request, user.id, user.name)
    return Principal(user=user, is_admin=False)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise PermissionDeniedError("this route needs the admin key; a user key may not call it")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]
AdminOnly = Depends(require_admin)  # for ``dependencies=[...]`` of routes that do not use the principal


def require_json(request: Request, principal: PrincipalDep) -> None:  # noqa: ARG001
    """A JSON-body route refuses a body of another type with 415 (FastAPI alone would answer 422)."""
    # ``principal``: an unauthenticated caller gets 401 first.
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if has_body and media_type != "application/json" and not media_type.endswith("+json"):
        shown = f"Content-Type {media_type!r} is" if media_type else "a body without Content-Type is"
        raise HTTPException(415, detail=f"{shown} not supported here; send application/json")


JsonBody = Depends(require_json)

TaskName = Annotated[str, Path(description="The task's name.", examples=["gold-sentiment"])]
UserName = Annotated[str, Path(description="The user's name.", examples=["john"])]


def not_visible(name: str) -> NotFoundError:
    """What a user key learns about another user: nothing, exactly as if the user did not exist."""
    return NotFoundError(f"user {name!r} does not exist")


def check_visible(principal: Principal, name: str) -> None:
    """A user key may only name its own user."""
    if not principal.is_admin and (principal.user is None or principal.user.name != name):
        raise not_visible(name)


def get_path_task(task: TaskName, principal: PrincipalDep, session: SessionDep) -> Task:  # noqa: ARG001
    # ``principal`` first: an unauthenticated caller learns nothing, not even which tasks exist.
    return task_service.get_task(session=session, name=task)


TaskDep = Annotated[Task, Depends(get_path_task)]


def get_path_user(user: UserName, principal: PrincipalDep, session: SessionDep) -> User:
    check_visible(principal, user)
    if principal.user is not None and not principal.is_admin:
        return principal.user
    return user_service.get_user(session=session, name=user)


OwnerDep = Annotated[User, Depends(get_path_user)]


def get_upload_user_name(user: UserName, principal: PrincipalDep) -> str:
    """The path user of a label upload: it need not exist yet when the admin uploads (it is created with the
    first stored label); a user key may only upload for itself."""
    check_visible(principal, user)
    return user_service.check_user_name(user)


UploadUserDep = Annotated[str, Depends(get_upload_user_name)]
