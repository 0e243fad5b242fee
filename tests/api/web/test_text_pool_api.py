"""The text pool API: admin uploads of unlabelled texts as JSON, JSONL or CSV, with line-numbered errors."""
from __future__ import annotations

from api_support import ADMIN, TASK

from localize.db.models import PoolText, Text


def test_json_upload_adds_texts_and_counts_repeats(ws, task, john):  # noqa: ARG001
    body = {"texts": ["gold soars", {"text": "Brent slips", "item": "t-2"}, "gold soars"]}
    response = ws.client.post(f"/tasks/{TASK}/texts", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 3, "added": 2, "already_in_pool": 1, "errors": []}
    again = ws.client.post(f"/tasks/{TASK}/texts", json={"texts": ["Brent slips", "copper flat"]}, headers=ADMIN)
    assert again.json() | {"errors": []} == {"accepted": 2, "added": 1, "already_in_pool": 1, "errors": []}
    listed = ws.client.get(f"/tasks/{TASK}/texts", headers=ADMIN).json()
    assert [(row["text"], row["item"]) for row in listed["data"]] == [
        ("gold soars", None), ("Brent slips", "t-2"), ("copper flat", None)]
    assert listed["count"] == 3 and listed["summary"] == {"uploaded": 3, "labelled": 0, "total": 3}


def test_jsonl_and_csv_keep_good_rows_and_report_bad_ones_by_line(ws, task):  # noqa: ARG001
    jsonl = '{"text": "one"}\n{"txt": "typo"}\nnot json\n{"text": "   "}\n{"text": "two", "item": "i2"}\n'
    response = ws.client.post(f"/tasks/{TASK}/texts", content=jsonl,
                              headers={**ADMIN, "Content-Type": "application/jsonl"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["added"], [error["line"] for error in body["errors"]]) == (2, [2, 3, 4])
    assert "missing field 'text'" in body["errors"][0]["message"]
    assert "invalid JSON" in body["errors"][1]["message"]
    assert "only whitespace" in body["errors"][2]["message"]

    csv_body = 'text,item\nthree,i3\n"four, with a comma",\n' + "x" * 1001 + ",i5\n"
    response = ws.client.post(f"/tasks/{TASK}/texts", content=csv_body, headers={**ADMIN, "Content-Type": "text/csv"})
    body = response.json()
    assert body["added"] == 2 and body["errors"] == [{"line": 4, "message": "text is 1001 characters, over the "
                                                                             "limit of 1000"}]
    files = {"file": ("pool.csv", b"text\nfive\n", "text/csv")}
    assert ws.client.post(f"/tasks/{TASK}/texts", files=files, headers=ADMIN).json()["added"] == 1


def test_bad_uploads_are_refused_and_store_nothing(ws, task, john):  # noqa: ARG001
    before = ws.count(PoolText), ws.count(Text)
    cases = [
        ({"json": {"texts": ["", 7]}}, 422, "no text was accepted: line 1: field 'text' is empty; line 2: expected"),
        ({"json": {"text": "not a list"}}, 422, 'list "texts"'),
        ({"content": "text\n", "headers": {"Content-Type": "text/csv"}}, 422, "holds no texts"),
        ({"content": "item\nx\n", "headers": {"Content-Type": "text/csv"}}, 422, "missing column(s) ['text']"),
        ({"content": "hello", "headers": {"Content-Type": "text/plain"}}, 415, "not supported"),
        ({"json": {"texts": ["t"] * 101}}, 413, "over the limit of 100"),
    ]
    for kwargs, status, message in cases:
        headers = {**ADMIN, **kwargs.pop("headers", {})}
        response = ws.client.post(f"/tasks/{TASK}/texts", headers=headers, **kwargs)
        assert response.status_code == status, (kwargs, response.text)
        assert message in response.json()["detail"], response.json()
    assert (ws.count(PoolText), ws.count(Text)) == before


def test_only_the_admin_manages_the_pool(ws, task, john):  # noqa: ARG001
    assert ws.client.post(f"/tasks/{TASK}/texts", json={"texts": ["x"]}, headers=john).status_code == 403
    assert ws.client.get(f"/tasks/{TASK}/texts", headers=john).status_code == 403
    assert ws.client.post(f"/tasks/{TASK}/texts", json={"texts": ["x"]}).status_code == 401
    assert ws.client.post("/tasks/nope/texts", json={"texts": ["x"]}, headers=ADMIN).status_code == 404


def test_unreadable_bodies_and_unstorable_texts_are_named(ws, task):  # noqa: ARG001
    json_headers = {**ADMIN, "Content-Type": "application/json"}
    response = ws.client.post(f"/tasks/{TASK}/texts", content=b'{"texts": ["a"', headers=json_headers)
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
    response = ws.client.post(f"/tasks/{TASK}/texts", content=b'{"texts": ["\\ud800 lone", "fine"]}',
                              headers=json_headers)
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 1 and "lone surrogate" in response.json()["errors"][0]["message"]
