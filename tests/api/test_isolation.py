"""Isolation: a user key reaches only its own user. Another user's resources answer 404 exactly as if they did
not exist, and nothing changes; no key or a bad key is 401; a user key on an admin route is 403."""
from __future__ import annotations

import pytest
from api_support import ADMIN, TASK, TEXTS, make_settings
from fastapi.routing import APIRoute

from localize.api.app import ROUTERS, create_app
from localize.api.deps import require_admin

API_ROUTES = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]
ROUTES = sorted((method, route.path) for route in API_ROUTES for method in route.methods)
PUBLIC = {("GET", "/health"), ("GET", "/ready")}
ANY_KEY = {("GET", "/tasks"), ("GET", "/tasks/{task}"), ("GET", "/jobs")}
ANY_KEY |= {("GET", "/tasks/{task}/retraining")}  # the labelling loop's routes
ADMIN_ONLY = {
    ("POST", "/users"), ("GET", "/users"), ("POST", "/users/{user}/keys"), ("POST", "/tasks"),
    ("POST", "/tasks/{task}/labels"), ("POST", "/tasks/{task}/prior/jobs"), ("POST", "/tasks/{task}/jobs/stale"),
    ("POST", "/tasks/{task}/fanout"), ("DELETE", "/tasks/{task}"), ("GET", "/metrics"),
    ("POST", "/tasks/{task}/webhooks"), ("GET", "/tasks/{task}/webhooks"), ("GET", "/tasks/{task}/webhooks/{webhook_id}"),
    ("DELETE", "/tasks/{task}/webhooks/{webhook_id}"), ("GET", "/tasks/{task}/webhooks/{webhook_id}/deliveries"),
    ("POST", "/tasks/{task}/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"),
}
ADMIN_ONLY |= {("POST", "/tasks/{task}/texts"), ("GET", "/tasks/{task}/texts"), ("PUT", "/tasks/{task}/retraining")}
ADMIN_ONLY |= {("PUT", "/tasks/{task}/recipe"), ("POST", "/tasks/{task}/jobs/all")}  # the task's recipe
ADMIN_ONLY |= {("PATCH", "/tasks/{task}"), ("POST", "/tasks/{task}/rename"), ("PATCH", "/users/{user}"),
               ("DELETE", "/users/{user}"), ("PATCH", "/tasks/{task}/label-set/{label}"),
               ("DELETE", "/tasks/{task}/label-set/{label}")}
JOHN_LABEL = [{"text": "Invoice 99", "label": "work"}]
# Jane's key on John's resources. (method, route, concrete path, request arguments, expected detail)
USER_SCOPED = [
    ("GET", "/tasks/{task}/users/{user}/labels", "/tasks/notes/users/john/labels", {}, "user 'john' does not exist"),
    ("POST", "/tasks/{task}/users/{user}/labels", "/tasks/notes/users/john/labels", {"json": {"labels": JOHN_LABEL}},
     "user 'john' does not exist"),
    ("POST", "/tasks/{task}/users/{user}/labels", "/tasks/notes/users/john/labels",
     {"content": "text,label\nInvoice 99,work\n", "headers": {"Content-Type": "text/csv"}},
     "user 'john' does not exist"),
    ("POST", "/tasks/{task}/users/{user}/labels", "/tasks/notes/users/john/labels",
     {"files": {"file": ("l.csv", b"text,label\nInvoice 99,work\n", "text/csv")}}, "user 'john' does not exist"),
    ("DELETE", "/tasks/{task}/users/{user}/labels", "/tasks/notes/users/john/labels", {},
     "user 'john' does not exist"),
    ("DELETE", "/tasks/{task}/users/{user}/labels/{label_id}", "/tasks/notes/users/john/labels/{label_id}", {},
     "user 'john' does not exist"),
    # Jane's own path, but John's label id.
    ("DELETE", "/tasks/{task}/users/{user}/labels/{label_id}", "/tasks/notes/users/jane/labels/{label_id}", {},
     "label id(s) [{label_id}] do not exist for user 'jane'"),
    ("POST", "/tasks/{task}/users/{user}/jobs", "/tasks/notes/users/john/jobs", {"json": {}},
     "user 'john' does not exist"),
    ("GET", "/jobs/{job_id}", "/jobs/{job_id}", {}, "job {job_id} does not exist"),
    ("POST", "/jobs/{job_id}/cancel", "/jobs/{job_id}/cancel", {}, "job {job_id} does not exist"),
    ("GET", "/tasks/{task}/users/{user}/adapters", "/tasks/notes/users/john/adapters", {},
     "user 'john' does not exist"),
    ("GET", "/tasks/{task}/users/{user}/adapters/{version}", "/tasks/notes/users/john/adapters/1", {},
     "user 'john' does not exist"),
    ("POST", "/tasks/{task}/users/{user}/adapters/{version}/activate", "/tasks/notes/users/john/adapters/1/activate",
     {}, "user 'john' does not exist"),
    ("DELETE", "/tasks/{task}/users/{user}/adapters/{version}", "/tasks/notes/users/john/adapters/1", {},
     "user 'john' does not exist"),
    ("POST", "/tasks/{task}/users/{user}/predict", "/tasks/notes/users/john/predict", {"json": {"texts": TEXTS[:1]}},
     "user 'john' does not exist"),
    ("POST", "/predict", "/predict",
     {"json": {"rows": [{"user": "jane", "task": TASK, "text": "x"}, {"user": "john", "task": TASK, "text": "x"}]}},
     "user 'john' does not exist"),
    # The labelling loop: queue, answers, retraining status, explanations.
    ("GET", "/tasks/{task}/users/{user}/queue", "/tasks/notes/users/john/queue", {}, "user 'john' does not exist"),
    ("POST", "/tasks/{task}/users/{user}/queue/answers", "/tasks/notes/users/john/queue/answers",
     {"json": {"text_id": 1, "label": "work"}}, "user 'john' does not exist"),
    ("GET", "/tasks/{task}/users/{user}/retraining", "/tasks/notes/users/john/retraining", {},
     "user 'john' does not exist"),
    ("POST", "/tasks/{task}/users/{user}/explain", "/tasks/notes/users/john/explain", {"json": {"text": "x"}},
     "user 'john' does not exist"),
]


def _fill(path: str) -> str:
    return path.format(task=TASK, user="john", label_id=1, job_id=1, version=1, label="work", webhook_id=1,
                       delivery_id=1)


def _needs_admin(route: APIRoute) -> bool:
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if dependant.call is require_admin:
            return True
        stack.extend(dependant.dependencies)
    return False


def test_every_route_is_classified(tmp_path):
    scoped = {(method, route) for method, route, *_ in USER_SCOPED}
    assert set(ROUTES) == PUBLIC | ANY_KEY | ADMIN_ONLY | scoped
    # ROUTERS is what the app serves: the OpenAPI document (built from the app) lists the same operations.
    # Building the app creates its workspace's (empty, private) database file: in a temporary folder, not the checkout.
    paths = create_app(make_settings(tmp_path / "unused")).openapi()["paths"]
    assert {(method.upper(), path) for path, operations in paths.items() for method in operations} == set(ROUTES)
    admin_routes = {(method, route.path) for route in API_ROUTES if _needs_admin(route) for method in route.methods}
    assert admin_routes == ADMIN_ONLY


@pytest.mark.parametrize(("method", "route", "path", "kwargs", "detail"), USER_SCOPED,
                         ids=[f"{m} {p} {i}" for i, (m, p, *_) in enumerate(USER_SCOPED)])
def test_another_users_resources_do_not_exist(trained, method, route, path, kwargs, detail):  # noqa: ARG001
    label_id = trained.client.get(f"/tasks/{TASK}/users/john/labels", headers=ADMIN).json()["data"][0]["id"]
    job_id = trained.jobs["john"]["id"]
    before = trained.snapshot()
    kwargs = {**kwargs, "headers": {**trained.jane, **kwargs.get("headers", {})}}
    response = trained.client.request(method, path.format(label_id=label_id, job_id=job_id), **kwargs)
    assert response.status_code == 404, response.text
    assert response.json()["detail"].startswith(detail.format(label_id=label_id, job_id=job_id))
    assert trained.snapshot() == before


def test_another_user_looks_exactly_like_no_user(trained):
    other = trained.client.get(f"/tasks/{TASK}/users/john/labels", headers=trained.jane).json()
    ghost = trained.client.get(f"/tasks/{TASK}/users/ghost/labels", headers=trained.jane).json()
    assert {**other, "detail": None, "instance": None} == {**ghost, "detail": None, "instance": None}


def test_job_list_shows_only_the_callers_jobs(trained):
    for params in ({}, {"task": TASK}, {"state": "succeeded"}):
        listing = trained.client.get("/jobs", params=params, headers=trained.jane).json()
        assert listing["count"] == 1
        assert [job["user"] for job in listing["data"]] == ["jane"]
    assert trained.client.get("/jobs", headers=ADMIN).json()["count"] == 2


def test_the_owner_reaches_the_same_resources(trained):
    """The routes above are refused because of who asks, not because they are broken."""
    assert trained.client.get(f"/tasks/{TASK}/users/john/labels", headers=trained.john).json()["count"] == len(TEXTS)
    assert trained.client.get(f"/jobs/{trained.jobs['john']['id']}", headers=trained.john).status_code == 200
    assert trained.client.get(f"/tasks/{TASK}/users/john/adapters/1", headers=trained.john).status_code == 200


@pytest.mark.parametrize(("method", "route"), [r for r in ROUTES if r not in PUBLIC])
@pytest.mark.parametrize("auth", [None, "Bearer not-a-key", "Basic am9objpwdw==", f"Bearer {'x' * 64}"])
def test_no_key_or_bad_key_is_401(trained, method, route, auth):
    before = trained.snapshot()
    headers = {"Authorization": auth} if auth else {}
    response = trained.client.request(method, _fill(route), headers=headers, json={})
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/problem+json"
    expected = "missing API key" if auth in (None, "Basic am9objpwdw==") else "invalid API key"
    assert expected in response.json()["detail"]
    assert trained.snapshot() == before


@pytest.mark.parametrize(("method", "route"), sorted(ADMIN_ONLY))
def test_user_key_on_admin_route_is_403(trained, method, route):
    before = trained.snapshot()
    response = trained.client.request(method, _fill(route), headers=trained.john,
                                      json={"name": "x", "labels": ["a", "b"], "text": "x"})
    assert response.status_code == 403, response.text
    assert response.json()["type"] == "/problems/forbidden"
    assert "needs the admin key" in response.json()["detail"]
    assert trained.snapshot() == before
