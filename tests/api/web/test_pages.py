"""The web pages through the app itself: signing in, sessions and CSRF, who may see which page, and each page's
content. (The browser test drives the same pages in chromium.)"""
from __future__ import annotations

import re

import pytest
from collections.abc import Iterator

from api_support import ADMIN, TASK, TEXTS, Workspace, make_settings, running
from fastapi.testclient import TestClient
from markupsafe import escape
from loop_support import build_loop

from localize.db.models import Label, TextSkip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, dict[str, dict[str, str]]]]:
    """One app for the module (pages are thin doors onto services tested on both databases: SQLite is enough):
    the labelling-loop workspace where John has trained two versions. Tests sign in afresh (cookies cleared)."""
    with running(make_settings(tmp_path_factory.mktemp("pages"))) as ws:
        keys = build_loop(ws)
        ws.train("john")
        ws.upload("john", [{"text": TEXTS[0], "label": "personal"}])  # a changed label: version 2 learns it
        ws.train("john")
        yield ws, keys


@pytest.fixture
def ws(site):  # noqa: ANN001, ANN201
    site[0].client.cookies.clear()
    return site[0]


@pytest.fixture
def keys(site):  # noqa: ANN001, ANN201
    return site[1]


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def _sign_in(client: TestClient, key: str, next_page: str = "") -> tuple[int, str]:
    csrf = _csrf(client.get("/signin").text)
    response = client.post("/signin", data={"csrf_token": csrf, "key": key, "next": next_page},
                           follow_redirects=False)
    return response.status_code, response.headers.get("location", "")


def _key(headers: dict) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def test_signing_in_sets_a_strict_http_only_cookie_and_a_fresh_csrf_token(ws, keys):
    client = ws.client
    assert client.get("/", follow_redirects=False).headers["location"] == "/signin"
    page = client.get("/signin")
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict") and "Secure" not in cookie
    anonymous_csrf = _csrf(page.text)
    status, location = _sign_in(client, _key(keys["mia"]))
    assert (status, location) == (303, "/u/mia")
    assert _csrf(client.get("/u/mia").text) != anonymous_csrf  # a token planted before sign-in does not survive
    # Over HTTPS the cookie is Secure too.
    with TestClient(ws.client.app, base_url="https://testserver") as secure:
        assert "Secure" in secure.get("/signin").headers["set-cookie"]


def test_bad_sign_ins_are_refused(ws, keys):
    client = ws.client
    assert _sign_in(client, "lk_not-a-key")[0] == 401
    assert "That key is not valid" in client.post("/signin", data={"csrf_token": _csrf(client.get("/signin").text),
                                                                   "key": "nope"}).text
    no_csrf = client.post("/signin", data={"key": _key(keys["mia"])}, follow_redirects=False)
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    assert client.get("/u/mia", follow_redirects=False).status_code == 303  # still signed out
    # ``next`` only ever leads to a page of this site.
    assert _sign_in(client, _key(keys["mia"]), "//evil.example/phish") == (303, "/u/mia")
    assert _sign_in(client, _key(keys["mia"]), "/u/mia/tasks/notes/try") == (303, "/u/mia/tasks/notes/try")


def test_a_user_cannot_see_another_users_pages_or_the_admin_pages(ws, keys):
    client = ws.client
    _sign_in(client, _key(keys["mia"]))
    csrf = _csrf(client.get("/u/mia").text)
    for path in ("/u/john", f"/u/john/tasks/{TASK}/label", f"/u/john/tasks/{TASK}/model", f"/u/john/tasks/{TASK}/try",
                 f"/u/john/tasks/{TASK}/label/status", "/u/ghost", "/admin", "/admin/users", "/admin/jobs",
                 "/admin/pools", f"/admin/tasks/{TASK}/agreement"):
        response = client.get(path)
        assert response.status_code == 404 and "Not found" in response.text, path
    before = ws.count(Label)
    answer = client.post(f"/u/john/tasks/{TASK}/label/answer", data={"csrf_token": csrf, "text_id": 1,
                                                                     "label": "work"})
    assert answer.status_code == 404 and ws.count(Label) == before
    # Signed out, a page sends to the sign-in form and back.
    client.cookies.clear()
    response = client.get(f"/u/mia/tasks/{TASK}/label", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == f"/signin?next=/u/mia/tasks/{TASK}/label"


def test_a_new_key_ends_the_sessions_of_the_old_one(ws, keys):
    _sign_in(ws.client, _key(keys["jane"]))
    assert ws.client.get("/u/jane").status_code == 200
    assert ws.client.post("/users/jane/keys", headers=ADMIN).status_code == 201
    assert ws.client.get("/u/jane", follow_redirects=False).status_code == 303


def test_labelling_answers_skips_and_undoes_and_every_form_needs_the_csrf_token(ws, keys):
    client = ws.client
    _sign_in(client, _key(keys["mia"]))
    page = client.get(f"/u/mia/tasks/{TASK}/label").text
    csrf, first = _csrf(page), int(re.search(r'name="text_id" value="(\d+)"', page).group(1))
    url = f"/u/mia/tasks/{TASK}/label"
    labels_before = ws.count(Label)
    assert client.post(f"{url}/answer", data={"text_id": first, "label": "work"}).status_code == 403
    assert client.post(f"{url}/answer", data={"csrf_token": "forged", "text_id": first,
                                              "label": "work"}).status_code == 403
    assert ws.count(Label) == labels_before

    htmx = {"HX-Request": "true"}
    answered = client.post(f"{url}/answer", data={"csrf_token": csrf, "text_id": first, "label": "work"}, headers=htmx)
    assert answered.status_code == 200 and "You said <strong>work</strong>" in answered.text
    assert "<html" not in answered.text  # a fragment for htmx
    second = int(re.search(r'name="text_id" value="(\d+)"', answered.text).group(1))
    assert second != first and ws.count(Label) == labels_before + 1
    skipped = client.post(f"{url}/answer", data={"csrf_token": csrf, "text_id": second, "skip": "1"}, headers=htmx)
    assert "Skipped." in skipped.text and ws.count(TextSkip) == 1
    # u undoes the skip, then the label, newest first; each brings its text back.
    undone = client.post(f"{url}/undo", data={"csrf_token": csrf}, headers=htmx)
    assert f'name="text_id" value="{second}"' in undone.text and ws.count(TextSkip) == 0
    undone = client.post(f"{url}/undo", data={"csrf_token": csrf}, headers=htmx)
    assert f'name="text_id" value="{first}"' in undone.text and ws.count(Label) == labels_before
    nothing = client.post(f"{url}/undo", data={"csrf_token": csrf}, headers=htmx)
    assert "nothing to undo" in nothing.text
    bad = client.post(f"{url}/answer", data={"csrf_token": csrf, "text_id": first, "label": "holiday"}, headers=htmx)
    assert bad.status_code == 422 and "label &#39;holiday&#39; is not one of" in bad.text
    assert bad.headers["HX-Retarget"] == "#messages"


def test_model_and_try_pages_show_versions_rollback_and_crowd_differences(ws, keys):
    client = ws.client
    _sign_in(client, _key(keys["john"]))
    model = client.get(f"/u/john/tasks/{TASK}/model").text
    assert "Validation macro-F1" in model and 'role="img"' in model and "Roll back to version 1" in model
    differences = model.split("Where you differ from the crowd")[1]
    # Past the sixth text only Jane labelled John's texts too, always the other way: each is listed. On the first
    # six Mia sides with John against Jane, a tie, so there is no majority to differ from.
    assert all(escape(text) in differences for text in TEXTS[6:])
    assert not any(escape(text) in differences for text in TEXTS[1:6])
    csrf = _csrf(model)
    rolled = client.post(f"/u/john/tasks/{TASK}/model/activate", data={"csrf_token": csrf, "version": 1})
    assert rolled.status_code == 200 and "Roll back to version 2" in rolled.text
    client.post(f"/u/john/tasks/{TASK}/model/activate", data={"csrf_token": csrf, "version": 2})
    tried = client.post(f"/u/john/tasks/{TASK}/try", data={"csrf_token": csrf, "text": "Invoice 7 from Globex"},
                        headers={"HX-Request": "true"})
    assert tried.status_code == 200 and tried.text.count("<mark") == 4
    empty = client.post(f"/u/john/tasks/{TASK}/try", data={"csrf_token": csrf, "text": " "},
                        headers={"HX-Request": "true"})
    assert empty.status_code == 422 and "text is empty" in empty.text


def test_admin_pages(ws):
    client = ws.client
    assert _sign_in(client, ADMIN["Authorization"].removeprefix("Bearer ")) == (303, "/admin")
    tasks = client.get("/admin").text
    assert "notes" in tasks and "Agreement in notes" in tasks
    users = client.get("/admin/users").text
    assert re.search(r"john</a></th>\s*<td>notes</td>\s*<td>24</td>\s*<td>2</td>", users)
    assert users.count("<strong>stale</strong>") == 2  # Jane and Mia have labels but no model
    assert "Job 2" in client.get("/admin/jobs").text
    assert "succeeded" in client.get("/admin/jobs/1").text and client.get("/admin/jobs/99").status_code == 404
    assert "8 uploaded" in client.get("/admin/pools").text
    agreement = client.get(f"/admin/tasks/{TASK}/agreement").text
    assert "Agreement between each pair of users in notes" in agreement and "<svg" in agreement
    # John and Jane disagree everywhere, Mia agrees with John: alpha is low but defined.
    assert re.search(r'<p class="big">-?0\.\d{3}</p>', agreement)
    csrf = _csrf(tasks)
    assert client.post(f"/admin/tasks/{TASK}/retraining", data={"csrf_token": csrf, "retrain_every": 5},
                       follow_redirects=False).status_code == 303
    assert ws.client.get(f"/tasks/{TASK}/retraining", headers=ADMIN).json() == {"retrain_every": 5}
    refused = client.post(f"/admin/tasks/{TASK}/retraining", data={"csrf_token": csrf, "retrain_every": -2})
    assert refused.status_code == 422 and "retrain_every=-2" in refused.text
    client.post(f"/admin/tasks/{TASK}/retraining", data={"csrf_token": csrf, "retrain_every": 20})


def test_assets_ship_with_the_package(ws):
    client = ws.client
    htmx = client.get("/static/htmx-2.0.4.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text[:200]
    assert "Zero-Clause BSD" in client.get("/static/htmx-2.0.4.LICENSE").text
    assert client.get("/static/label.js").status_code == 200


def test_the_retraining_box_polls_while_a_job_is_pending_and_stops_when_it_is_done(ws, keys):
    _sign_in(ws.client, _key(keys["mia"]))
    url = f"/u/mia/tasks/{TASK}/label/status"
    assert 'hx-trigger="every 1s"' not in ws.client.get(url).text
    job = ws.queue("mia", headers=keys["mia"])
    pending = ws.client.get(url).text
    assert 'hx-trigger="every 1s"' in pending and f"Retraining (job {job['id']}, queued)" in pending
    assert 'aria-label="Retraining progress"' in pending
    assert ws.client.post(f"/jobs/{job['id']}/cancel", headers=ADMIN).status_code == 200
    assert 'hx-trigger="every 1s"' not in ws.client.get(url).text
