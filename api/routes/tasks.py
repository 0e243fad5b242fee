"""Tasks: a name and a label set shared by the users who label that kind of text."""
from __future__ import annotations

from fastapi import APIRouter, status

from localize.api.deps import AdminOnly, JsonBody, PrincipalDep, SessionDep, TaskDep
from localize.api.errors import problem_responses
from localize.api.schemas import TaskCreate, TaskPublic, TasksPublic
from localize.services import tasks as task_service

router = APIRouter(prefix="/tasks", tags=["tasks"], responses=problem_responses(401))


@router.post("", response_model=TaskPublic, status_code=status.HTTP_201_CREATED,
             responses=problem_responses(403, 409, 422), dependencies=[AdminOnly, JsonBody])
def create_task(body: TaskCreate, session: SessionDep) -> TaskPublic:
    """Create a task with its label set (admin)."""
    task = task_service.create_task(session=session, name=body.name, labels=body.labels,
                                    description=body.description)
    return TaskPublic.model_validate(task)


@router.get("", response_model=TasksPublic)
def list_tasks(session: SessionDep, _: PrincipalDep) -> TasksPublic:
    """List every task, by name."""
    rows = task_service.list_tasks(session=session)
    return TasksPublic(data=[TaskPublic.model_validate(row) for row in rows], count=len(rows))


@router.get("/{task}", response_model=TaskPublic, responses=problem_responses(404, 422))
def get_task(task: TaskDep) -> TaskPublic:
    """One task."""
    return TaskPublic.model_validate(task)
