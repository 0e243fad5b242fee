"""Tasks: a name and a label set shared by the users who label that kind of text."""
from __future__ import annotations

from fastapi import APIRouter, status

from localize.api.deps import AdminOnly, JsonBody, PrincipalDep, RuntimeDep, SessionDep, TaskDep
from localize.api.errors import problem_responses
from localize.api.schemas import TaskCreate, TaskDeletionPublic, TaskPublic, TaskRecipePin, TasksPublic, TaskUpdate
from localize.api.validation import JsonRoute
from localize.services import task_recipes
from localize.services import tasks as task_service

router = APIRouter(route_class=JsonRoute, prefix="/tasks", tags=["tasks"], responses=problem_responses(401))


@router.post("", response_model=TaskPublic, status_code=status.HTTP_201_CREATED,
             responses=problem_responses(403, 409, 422), dependencies=[AdminOnly, JsonBody])
def create_task(body: TaskCreate, session: SessionDep) -> TaskPublic:
    """Create a task with its label set (admin)."""
    task = task_service.create_task(session=session, name=body.name, labels=body.labels,
                                    description=body.description, target_accuracy=body.target_accuracy)
    return TaskPublic.model_validate(task)


@router.patch("/{task}", response_model=TaskPublic, responses=problem_responses(403, 404, 422),
              dependencies=[AdminOnly, JsonBody])
def update_task(task: TaskDep, body: TaskUpdate, session: SessionDep) -> TaskPublic:
    """Change a task's settings: its description, or the accuracy its predictions abstain to reach (admin)."""
    task = task_service.update_task(session=session, task=task, description=body.description,
                                    target_accuracy=body.target_accuracy)
    return TaskPublic.model_validate(task)


@router.put("/{task}/recipe", response_model=TaskPublic, responses=problem_responses(403, 404, 422),
            dependencies=[AdminOnly, JsonBody])
def pin_recipe(task: TaskDep, body: TaskRecipePin, session: SessionDep) -> TaskPublic:
    """Pin the recipe the task's users train with, instead of the one whole-task training chooses; null unpins
    (admin). Users' next jobs use it; retrain them to apply it now."""
    task = task_recipes.pin_recipe(session=session, task=task, name=body.recipe)
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


@router.delete("/{task}", response_model=TaskDeletionPublic, responses=problem_responses(403, 404, 409, 422),
               dependencies=[AdminOnly])
def delete_task(task: TaskDep, session: SessionDep, runtime: RuntimeDep) -> TaskDeletionPublic:
    """Delete a task with every user's labels in it, its text pool, its adapter versions and their stored files,
    its jobs, and the texts no other task uses (admin); refused while one of its jobs is running."""
    deletion = task_service.delete_task(session=session, runtime=runtime, task=task)
    return TaskDeletionPublic.model_validate(deletion.to_dict())
