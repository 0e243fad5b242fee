"""The one dependency of the hot prediction route: the access rules of :mod:`localize.api.deps` (401, then 415,
then 404 for a task that does not exist or a user the key may not see), answered from the serving cache
(:mod:`localize.services.lookups`) on the event loop.

A warm request takes no database session and no worker thread; a cache miss is looked up in a worker thread. It
starts by refreshing the cache, so a key revoked or a version activated a moment ago is seen at once. It is one
dependency rather than a chain of them because FastAPI's dependency machinery costs more per request than the
lookups do."""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from localize.api.deps import Principal, TaskName, UserName, _unauthorized, bearer, check_visible, require_json
from localize.api.ratelimit import check_rate
from localize.db.models import Task, User
from localize.runtime import Runtime
from localize.services.lookups import CacheMiss, KeyHolder, ServingLookups


@dataclass(frozen=True)
class ServingPath:
    """What the hot route needs: the runtime, the cache, and the path's task and user (detached rows)."""

    runtime: Runtime
    lookups: ServingLookups
    task: Task
    user: User


async def get_serving_path(
    request: Request, task: TaskName, user: UserName,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ServingPath:
    if credentials is None or not credentials.credentials:
        raise _unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
    runtime: Runtime = request.app.state.runtime
    lookups: ServingLookups = request.app.state.lookups
    lookups.refresh()  # first: everything this request looks up is at least as new as the request
    key = credentials.credentials
    admin_key = runtime.settings.admin_key
    if admin_key and hmac.compare_digest(key.encode("utf-8"), admin_key.encode("utf-8")):
        principal = Principal(user=None, is_admin=True)
    else:
        try:
            holder: KeyHolder | None = lookups.key_holder(key, load=False)
        except CacheMiss:
            holder = await anyio.to_thread.run_sync(lookups.key_holder, key)
        if holder is None:
            raise _unauthorized("invalid API key")
        check_rate(request, holder.user_id, holder.name)  # the same per-key limit as every other route
        # A detached stand-in: only its name is read, and it is never handed to a session.
        principal = Principal(user=User(id=holder.user_id, name=holder.name), is_admin=False)
    require_json(request, principal)  # a header check: 415 after 401, as on every JSON route

    def find(load: bool) -> ServingPath:
        found = lookups.task(task, load=load)  # the task first, as on every other route
        check_visible(principal, user)
        return ServingPath(runtime=runtime, lookups=lookups, task=found, user=lookups.user(user, load=load))

    try:
        return find(False)
    except CacheMiss:
        return await anyio.to_thread.run_sync(find, True)


ServingPathDep = Annotated[ServingPath, Depends(get_serving_path)]
