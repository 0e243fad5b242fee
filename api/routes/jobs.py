"""Training jobs: queue (a worker runs them), follow, list and cancel."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response, status
from localize.api.deps import AdminOnly, JsonBody, OwnerDep, PrincipalDep, RuntimeDep, SessionDep, TaskDep
from localize.api.errors import problem_responses
from localize.api.schemas import TRAINING_EXAMPLE, JobPublic, JobsPublic, JobStateName, WholeTaskTraining
from localize.api.validation import JsonRoute, Offset
from sqlmodel import Session

from localize.db.models import Job
from localize.recipes import TaskRecipe
from localize.services import jobs as job_service
from localize.services import limits
from localize.services import tasks as task_service
from localize.services.users import list_users
from localize.settings import Settings
from localize.training_args import TrainingArguments
from localize.validation import MAX_ID

# Jobs are created under the task they train and then addressed by id, so this router has no common prefix.
router = APIRouter(route_class=JsonRoute, tags=["jobs"], responses=problem_responses(401, 404, 422))

TrainingBody = Annotated[
    dict[str, Any] | None,
    Body(
        description="Training arguments (see localize.training_args.TrainingArguments); all optional, `method` "
        "defaults to the server's default method.",
        openapi_examples={
            "head": {"summary": "A classification head, few epochs", "value": TRAINING_EXAMPLE},
            "lora": {"summary": "LoRA with rank 4", "value": {"method": "lora", "method_options": {"r": 4}}},
        },
    ),
]
WholeTaskBody = Annotated[WholeTaskTraining | None, Body()]
JobId = Annotated[int, Path(ge=1, le=MAX_ID, description="The job's id.", examples=[3])]

def training_arguments(values: dict[str, Any] | None, settings: Settings) -> TrainingArguments | TaskRecipe:
    """The body's arguments; none means the task's recipe (chosen by whole-task training, or pinned)."""
    return job_service.arguments_or_task_recipe(values, default_method=settings.default_method,
                                                base_model=settings.base_model)


def _queued(response: Response, session: Session, job: Job) -> JobPublic:
    response.headers["Location"] = f"/jobs/{job.id}"
    return JobPublic.model_validate(job_service.job_public(session=session, job=job))


@router.post("/tasks/{task}/users/{user}/jobs", response_model=JobPublic, status_code=status.HTTP_202_ACCEPTED,
             responses=problem_responses(400, 409, 422), dependencies=[JsonBody])
def queue_training(task: TaskDep, owner: OwnerDep, session: SessionDep, runtime: RuntimeDep, response: Response,
                   args: TrainingBody = None) -> JobPublic:
    """Queue training of a user's adapter on their labels; a worker runs it, poll GET /jobs/{job_id}."""
    arguments = training_arguments(args, runtime.settings)
    limits.check_pending_jobs(session=session, user=owner, limit=runtime.settings.max_pending_jobs_per_user)
    job = job_service.queue_training(session=session, task=task, user=owner, args=arguments)
    return _queued(response, session, job)


@router.post("/tasks/{task}/prior/jobs", response_model=JobPublic, status_code=status.HTTP_202_ACCEPTED,
             responses=problem_responses(400, 403, 409, 422), dependencies=[AdminOnly, JsonBody])
def queue_prior_training(task: TaskDep, session: SessionDep, runtime: RuntimeDep, response: Response,
                         args: TrainingBody = None) -> JobPublic:
    """Queue training of the task prior on every user's labels (admin)."""
    arguments = training_arguments(args, runtime.settings)
    job = job_service.queue_training(session=session, task=task, user=None, args=arguments)
    return _queued(response, session, job)


@router.post("/tasks/{task}/jobs/stale", response_model=JobsPublic, status_code=status.HTTP_202_ACCEPTED,
             responses=problem_responses(400, 403, 422), dependencies=[AdminOnly, JsonBody])
def queue_stale_training(task: TaskDep, session: SessionDep, runtime: RuntimeDep,
                         args: TrainingBody = None) -> JobsPublic:
    """Queue training for every user whose labels changed since their adapter (admin)."""
    arguments = training_arguments(args, runtime.settings)
    jobs = job_service.queue_stale(session=session, task=task, args=arguments)
    data = [JobPublic.model_validate(job_service.job_public(session=session, job=job)) for job in jobs]
    return JobsPublic(data=data, count=len(data))


@router.post("/tasks/{task}/jobs/all", response_model=JobsPublic, status_code=status.HTTP_202_ACCEPTED,
             responses=problem_responses(403, 409, 422), dependencies=[AdminOnly, JsonBody])
def queue_whole_task(task: TaskDep, session: SessionDep, runtime: RuntimeDep,
                     body: WholeTaskBody = None) -> JobsPublic:
    """Train the whole task (admin): a job that chooses the task's recipe on every user's validation rows (unless
    one is pinned), then every user with labels, with the task's recipe. Poll the jobs; GET /tasks/{task} shows
    the choice."""
    users = list_users(session=session, task_id=task.id, limit=1_000_000)[0]
    jobs = job_service.queue_whole_task(session=session, task=task, users=users,
                                        force_activation=bool(body and body.force_activation),
                                        default_method=runtime.settings.default_method)
    data = [JobPublic.model_validate(job_service.job_public(session=session, job=job)) for job in jobs]
    return JobsPublic(data=data, count=len(data))


@router.get("/jobs", response_model=JobsPublic, responses=problem_responses(422))
def list_jobs(
    principal: PrincipalDep,
    session: SessionDep,
    state: Annotated[JobStateName | None, Query(description="Only jobs in this state.")] = None,
    task: Annotated[str | None, Query(description="Only jobs of this task.")] = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> JobsPublic:
    """List jobs, newest first: a user key sees its own, the admin key all."""
    task_row = None if task is None else task_service.get_task(session=session, name=task)
    jobs, count = job_service.list_jobs(session=session, user=principal.scope_user, task=task_row, state=state,
                                        offset=offset, limit=limit)
    data = [JobPublic.model_validate(job_service.job_public(session=session, job=job, with_events=False))
            for job in jobs]
    return JobsPublic(data=data, count=count)


@router.get("/jobs/{job_id}", response_model=JobPublic)
def get_job(job_id: JobId, principal: PrincipalDep, session: SessionDep) -> JobPublic:
    """One job with its events: state, progress, metrics and the adapter version it produced."""
    job = job_service.get_job(session=session, job_id=job_id, user=principal.scope_user)
    return JobPublic.model_validate(job_service.job_public(session=session, job=job))


@router.post("/jobs/{job_id}/cancel", response_model=JobPublic, responses=problem_responses(409))
def cancel_job(job_id: JobId, principal: PrincipalDep, session: SessionDep) -> JobPublic:
    """Cancel a job: a queued one at once, a running one at its next step; a finished one is a conflict."""
    job = job_service.get_job(session=session, job_id=job_id, user=principal.scope_user)
    job = job_service.cancel_job(session=session, job=job)
    return JobPublic.model_validate(job_service.job_public(session=session, job=job))
