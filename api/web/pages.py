"""A user's pages: sign in, their tasks, label (one text at a time), my model, and try it."""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from localize.api.deps import RuntimeDep, SessionDep
from localize.api.web import session as web_session
from localize.api.web.charts import line_chart
from localize.api.web.common import CsrfDep, OwnerPageDep, PageRoute, SignedInDep, WebSessionDep, is_htmx, render
from localize.api.web.session import WebSession
from localize.db.models import AdapterVersion, Job, JobState, Task, User
from localize.errors import NoAdapterError, ValidationError
from localize.services import adapters as adapter_service
from localize.services import agreement, explain, labelling, retraining, text_pool
from localize.services import queue as queue_service
from localize.services.tasks import get_task, list_tasks
from localize.services.users import authenticate, label_counts

router = APIRouter(route_class=PageRoute, include_in_schema=False)



def _home(web: WebSession, session) -> str:  # noqa: ANN001
    if web.is_admin:
        return "/admin"
    user = session.get(User, web.user_id)
    return f"/u/{user.name}"


# -- signing in and out -------------------------------------------------------------------------------------------
@router.get("/")
def index(web: WebSessionDep, session: SessionDep) -> Response:
    return RedirectResponse(_home(web, session) if web.signed_in else "/signin", status_code=303)


@router.get("/signin")
def signin_form(request: Request, web: WebSessionDep, next: str = "") -> HTMLResponse:  # noqa: A002
    response = render(request, "signin.html", {"next": next, "error": None}, web=web)
    web_session.save(request, response, web)  # the anonymous session carries the form's CSRF token
    return response


def _safe_next(target: str) -> str | None:
    """Only a path on this site: never another origin (``//host``) or a scheme."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else None


@router.post("/signin")
def signin(request: Request, web: CsrfDep, session: SessionDep, runtime: RuntimeDep,
           key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "") -> Response:  # noqa: A002
    key = key.strip()
    admin_key = runtime.settings.admin_key or ""
    codec = request.app.state.web_sessions
    if key and hmac.compare_digest(key.encode(), admin_key.encode()):
        fresh = WebSession(is_admin=True)
    else:
        user = authenticate(session=session, key=key) if key else None
        if user is None:
            message = "Enter your API key." if not key else "That key is not valid. Ask your admin for a new one."
            response = render(request, "signin.html", {"next": next, "error": message}, web=web, status_code=401)
            web_session.save(request, response, web)
            return response
        fresh = WebSession(user_id=user.id, fingerprint=web_session.key_fingerprint(codec.secret, user.api_key_hash))
    # A new session (and CSRF token) on sign-in: a token planted before cannot ride along.
    response = RedirectResponse(_safe_next(next) or _home(fresh, session), status_code=303)
    web_session.save(request, response, fresh)
    return response


@router.post("/signout")
def signout(request: Request, web: CsrfDep) -> Response:  # noqa: ARG001
    response = RedirectResponse("/signin", status_code=303)
    web_session.clear(request, response)
    return response


# -- a user's tasks -----------------------------------------------------------------------------------------------
@router.get("/u/{user}")
def home(request: Request, web: SignedInDep, owner: OwnerPageDep, session: SessionDep) -> HTMLResponse:
    rows = []
    for task in list_tasks(session=session):
        active = adapter_service.active_version(session=session, task=task, user=owner)
        rows.append({"task": task, "labels": label_counts(session=session, task_id=task.id).get(owner.id, 0),
                     "progress": text_pool.progress(session=session, task=task, user=owner), "active": active})
    return render(request, "home.html", {"rows": rows}, web=web, me=owner)


# -- label --------------------------------------------------------------------------------------------------------
def _job_view(session, job: Job | None) -> dict | None:  # noqa: ANN001
    if job is None:
        return None
    row = session.get(AdapterVersion, job.adapter_version_id) if job.adapter_version_id is not None else None
    return {"job": job, "version": row, "figures": None if row is None else _figures(row),
            "pending": job.state not in JobState.FINISHED}


def _status(session, task: Task, user: User) -> dict:  # noqa: ANN001
    state = retraining.status(session=session, task=task, user=user)
    latest = retraining.latest_job(session=session, task=task, user=user)
    return {**state, "latest": _job_view(session, latest)}


def _labelling_context(session, runtime, task: Task, user: User, web: WebSession, *,  # noqa: ANN001
                       show_text_id: int | None = None, feedback: dict | None = None) -> dict:
    if show_text_id is not None:  # an undone text comes back first
        text = text_pool.get_text(session=session, task=task, text_id=show_text_id)
        entry, strategy = {"text_id": text.id, "text": text.body, "reason": "undone"}, None
    else:
        entries, strategy = queue_service.next_entries(session=session, runtime=runtime, task=task, user=user)
        entry = None if not entries else {"text_id": entries[0].text_id, "text": entries[0].text,
                                          "reason": entries[0].pick.reason}
    return {"task": task, "entry": entry, "strategy": strategy, "feedback": feedback,
            "progress": text_pool.progress(session=session, task=task, user=user),
            "status": _status(session, task, user), "can_undo": web.can_undo(task.id)}


def _labelling_response(request: Request, web: WebSession, owner: User, context: dict) -> HTMLResponse:
    template = "_labelling.html" if is_htmx(request) else "label.html"
    response = render(request, template, context, web=web, me=owner)
    web_session.save(request, response, web)
    return response


@router.get("/u/{user}/tasks/{task}/label")
def label_page(request: Request, web: SignedInDep, owner: OwnerPageDep, task: str, session: SessionDep,
               runtime: RuntimeDep) -> HTMLResponse:
    task_row = get_task(session=session, name=task)
    context = _labelling_context(session, runtime, task_row, owner, web)
    return render(request, "label.html", context, web=web, me=owner)


@router.post("/u/{user}/tasks/{task}/label/answer")
def answer(request: Request, web: CsrfDep, owner: OwnerPageDep, task: str, session: SessionDep,
           runtime: RuntimeDep, text_id: Annotated[int, Form()], label: Annotated[str, Form()] = "",
           skip: Annotated[str, Form()] = "") -> HTMLResponse:
    task_row = get_task(session=session, name=task)
    if skip:
        text = labelling.skip(session=session, task=task_row, user=owner, text_id=text_id)
        web.push_undo("skip", task_row.id, text.id)
        feedback = {"kind": "skip", "text": text.body}
    else:
        if not label:
            raise ValidationError("choose one of the labels, or skip")
        result = labelling.answer(session=session, runtime=runtime, task=task_row, user=owner, text_id=text_id,
                                  label=label)
        web.push_undo("label", task_row.id, result.text_id)
        feedback = {"kind": "label", "text": result.text, "label": result.label, "guess": result.guess,
                    "job": result.job}
    context = _labelling_context(session, runtime, task_row, owner, web, feedback=feedback)
    return _labelling_response(request, web, owner, context)


@router.post("/u/{user}/tasks/{task}/label/undo")
def undo(request: Request, web: CsrfDep, owner: OwnerPageDep, task: str, session: SessionDep,
         runtime: RuntimeDep) -> HTMLResponse:
    task_row = get_task(session=session, name=task)
    last = web.pop_undo(task_row.id)
    if last is None:
        context = _labelling_context(session, runtime, task_row, owner, web,
                                     feedback={"kind": "nothing"})
        return _labelling_response(request, web, owner, context)
    action, text_id = last
    text = labelling.undo(session=session, task=task_row, user=owner, text_id=text_id, action=action)
    context = _labelling_context(session, runtime, task_row, owner, web, show_text_id=text.id,
                                 feedback={"kind": f"undo-{action}", "text": text.body})
    return _labelling_response(request, web, owner, context)


@router.get("/u/{user}/tasks/{task}/label/status")
def label_status(request: Request, web: SignedInDep, owner: OwnerPageDep, task: str,
                 session: SessionDep) -> HTMLResponse:
    """The retraining box, polled by htmx while a job is pending."""
    task_row = get_task(session=session, name=task)
    return render(request, "_retrain_status.html", {"task": task_row, "status": _status(session, task_row, owner)},
                  web=web, me=owner)


# -- my model -----------------------------------------------------------------------------------------------------
def _figures(row) -> dict:  # noqa: ANN001
    metrics = row.metrics or {}
    return {"accuracy": metrics.get("val_accuracy"), "macro_f1": metrics.get("val_macro_f1"),
            "rows": metrics.get("val_rows")}


@router.get("/u/{user}/tasks/{task}/model")
def model_page(request: Request, web: SignedInDep, owner: OwnerPageDep, task: str,
               session: SessionDep) -> HTMLResponse:
    task_row = get_task(session=session, name=task)
    versions = adapter_service.list_versions(session=session, task=task_row, user=owner)
    active = next((row for row in versions if row.is_active), None)
    chart = None
    if versions:
        chart = line_chart([row.version for row in versions],
                           {"validation accuracy": [_figures(row)["accuracy"] for row in versions],
                            "validation macro-F1": [_figures(row)["macro_f1"] for row in versions]},
                           title=f"Validation figures of {owner.name}'s versions in {task_row.name}")
    context = {"task": task_row, "versions": [(row, _figures(row)) for row in reversed(versions)],
               "active": active, "active_figures": None if active is None else _figures(active), "chart": chart,
               "differences": agreement.differences_from_crowd(session=session, task=task_row, user=owner, limit=50)}
    return render(request, "model.html", context, web=web, me=owner)


@router.post("/u/{user}/tasks/{task}/model/activate")
def activate(request: Request, web: CsrfDep, owner: OwnerPageDep, task: str, session: SessionDep,  # noqa: ARG001
             runtime: RuntimeDep, version: Annotated[int, Form()]) -> Response:
    task_row = get_task(session=session, name=task)
    adapter_service.activate_version(session=session, store=runtime.store, task=task_row, user=owner, version=version)
    return RedirectResponse(f"/u/{owner.name}/tasks/{task_row.name}/model", status_code=303)


# -- try it -------------------------------------------------------------------------------------------------------
def _highlighted(explanation: explain.Explanation) -> list[dict]:
    """The text cut into plain runs and attributed words, each word with a strength in [-1, 1]."""
    peak = max((abs(token.weight) for token in explanation.tokens), default=0.0) or 1.0
    parts, cursor = [], 0
    for token in explanation.tokens:
        if token.start > cursor:
            parts.append({"text": explanation.text[cursor:token.start], "weight": None})
        parts.append({"text": token.token, "weight": token.weight, "strength": token.weight / peak})
        cursor = token.end
    if cursor < len(explanation.text):
        parts.append({"text": explanation.text[cursor:], "weight": None})
    return parts


@router.get("/u/{user}/tasks/{task}/try")
def try_page(request: Request, web: SignedInDep, owner: OwnerPageDep, task: str, session: SessionDep) -> HTMLResponse:
    task_row = get_task(session=session, name=task)
    return render(request, "try.html", {"task": task_row, "text": "", "result": None, "error": None}, web=web,
                  me=owner)


@router.post("/u/{user}/tasks/{task}/try")
def try_text(request: Request, web: CsrfDep, owner: OwnerPageDep, task: str, session: SessionDep,
             runtime: RuntimeDep, text: Annotated[str, Form()] = "") -> HTMLResponse:
    task_row = get_task(session=session, name=task)
    result, error = None, None
    try:
        explanation = explain.explain(session=session, runtime=runtime, task=task_row, user=owner, text=text)
        top = sorted(explanation.tokens, key=lambda token: -abs(token.weight))[:5]
        result = {"explanation": explanation, "parts": _highlighted(explanation), "top": top}
    except NoAdapterError:
        error = "You have no model in this task yet: label some texts first, and it trains by itself."
    except ValidationError as problem:
        error = str(problem)
    context = {"task": task_row, "text": text, "result": result, "error": error}
    return render(request, "_try_result.html" if is_htmx(request) else "try.html", context, web=web, me=owner,
                  status_code=200 if error is None else 422)
