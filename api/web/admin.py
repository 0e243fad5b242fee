"""The admin's pages: tasks, users, jobs with their events, text pools, and agreement per task."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func
from sqlmodel import select

from localize.api.deps import SessionDep
from localize.api.web.charts import heat_map
from localize.api.web.common import AdminPageDep, CsrfDep, PageRoute, render
from localize.db.models import AdapterVersion, Job, JobEvent, Label, Task, User
from localize.errors import NotFoundError, PermissionDeniedError
from localize.services import adapters as adapter_service
from localize.services import agreement, retraining, text_pool
from localize.services.tasks import get_task, list_tasks

router = APIRouter(prefix="/admin", route_class=PageRoute, include_in_schema=False)


@router.get("")
def tasks_page(request: Request, web: AdminPageDep, session: SessionDep) -> HTMLResponse:
    rows = []
    for task in list_tasks(session=session):
        users, labels = session.exec(select(func.count(func.distinct(Label.user_id)), func.count())
                                     .where(Label.task_id == task.id)).one()
        prior = adapter_service.active_version(session=session, task=task, user=None)
        rows.append({"task": task, "users": users, "labels": labels, "prior": prior,
                     "pool": text_pool.pool_summary(session=session, task=task),
                     "retrain_every": retraining.retrain_every(session=session, task=task)})
    return render(request, "admin/tasks.html", {"rows": rows}, web=web)


@router.post("/tasks/{task}/retraining")
def set_retraining(request: Request, web: CsrfDep, session: SessionDep, task: str,  # noqa: ARG001
                   retrain_every: Annotated[int, Form()]) -> Response:
    if not web.is_admin:
        raise PermissionDeniedError("only the admin changes a task's retraining")
    retraining.set_retrain_every(session=session, task=get_task(session=session, name=task), every=retrain_every)
    return RedirectResponse("/admin", status_code=303)


@router.get("/users")
def users_page(request: Request, web: AdminPageDep, session: SessionDep) -> HTMLResponse:
    rows = []
    for task in list_tasks(session=session):
        stale = {user.id for user in adapter_service.stale_users(session=session, task=task)}
        counts = dict(session.exec(select(Label.user_id, func.count()).where(Label.task_id == task.id)
                                   .group_by(Label.user_id)).all())
        active = {row.user_id: row for row in session.exec(select(AdapterVersion).where(
            AdapterVersion.task_id == task.id, AdapterVersion.is_active, AdapterVersion.user_id.is_not(None)))}
        for user in session.exec(select(User).where(User.id.in_(set(counts) | set(active))).order_by(User.name)):
            row = active.get(user.id)
            rows.append({"task": task, "user": user, "labels": counts.get(user.id, 0), "active": row,
                         "macro_f1": None if row is None else (row.metrics or {}).get("val_macro_f1"),
                         "stale": user.id in stale})
    return render(request, "admin/users.html", {"rows": rows}, web=web)


@router.get("/jobs")
def jobs_page(request: Request, web: AdminPageDep, session: SessionDep) -> HTMLResponse:
    jobs = session.exec(select(Job, Task.name, User.name).join(Task, Task.id == Job.task_id)
                        .join(User, User.id == Job.user_id, isouter=True).order_by(Job.id.desc()).limit(200)).all()
    return render(request, "admin/jobs.html", {"jobs": jobs}, web=web)


@router.get("/jobs/{job_id}")
def job_page(request: Request, web: AdminPageDep, session: SessionDep, job_id: int) -> HTMLResponse:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFoundError(f"job {job_id} does not exist")
    events = session.exec(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)).all()
    user = session.get(User, job.user_id) if job.user_id is not None else None
    version = session.get(AdapterVersion, job.adapter_version_id) if job.adapter_version_id else None
    return render(request, "admin/job.html", {"job": job, "events": events, "task": session.get(Task, job.task_id),
                                              "user": user, "version": version}, web=web)


@router.get("/pools")
def pools_page(request: Request, web: AdminPageDep, session: SessionDep) -> HTMLResponse:
    pools = []
    for task in list_tasks(session=session):
        texts, count = text_pool.list_pool(session=session, task=task, limit=20)
        pools.append({"task": task, "summary": text_pool.pool_summary(session=session, task=task),
                      "texts": texts, "count": count})
    return render(request, "admin/pools.html", {"pools": pools}, web=web)


@router.get("/tasks/{task}/agreement")
def agreement_page(request: Request, web: AdminPageDep, session: SessionDep, task: str) -> HTMLResponse:
    task_row = get_task(session=session, name=task)
    report = agreement.agreement_report(session=session, task=task_row)
    chart = heat_map(report.names, report.pairwise, report.shared,
                     title=f"Agreement between each pair of users in {task_row.name}") if report.names else None
    return render(request, "admin/agreement.html", {"task": task_row, "report": report, "heat_map": chart}, web=web)
