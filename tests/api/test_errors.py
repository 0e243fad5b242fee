"""Every bad input gets its own status and a message that names the bad thing, as a problem+json document;
and a rejected request changes nothing that is stored."""
from __future__ import annotations

import json

import pytest
from api_support import ADMIN, TASK, make_settings
from fastapi.testclient import TestClient

from localize import errors
from localize.api.app import create_app

UPLOAD = f"/tasks/{TASK}/users/john/labels"


def problem(response, status: int, *fragments: str, type_: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("/problems/")
    if type_ is not None:
        assert body["type"] == f"/problems/{type_}"
    text = body["detail"] + json.dumps(body.get("errors", []))
    for fragment in fragments:
        assert fragment in text, (fragment, body)
    return body


@pytest.fixture
def before(ws, john):
    """John has two labels; returns everything stored, to compare with after a rejected request."""
    ws.upload("john", [{"text": "Invoice 7", "label": "work"}, {"text": "Zoo trip", "label": "personal"}],
              headers=john)
    return ws.snapshot()


def test_unknown_user(ws, before):
    response = ws.client.post(f"/tasks/{TASK}/users/ghost/jobs", json={}, headers=ADMIN)
    problem(response, 404, "user 'ghost' does not exist", type_="not-found")
    problem(ws.client.get(f"/tasks/{TASK}/users/ghost/labels", headers=ADMIN), 404, "user 'ghost' does not exist")
    assert ws.snapshot() == before


def test_unknown_task(ws, john, before):
    response = ws.client.post("/tasks/nope/users/john/labels", headers=john,
                              json={"labels": [{"text": "Invoice 8", "label": "work"}]})
    problem(response, 404, "task 'nope' does not exist", type_="not-found")
    problem(ws.client.post("/predict", headers=john, json={"rows": [{"user": "john", "task": "nope", "text": "x"}]}),
            404, "task 'nope' does not exist")
    assert ws.snapshot() == before


def test_label_outside_the_label_set(ws, john, before):
    response = ws.client.post(UPLOAD, headers=john, json={"labels": [{"text": "Invoice 7", "label": "bogus"}]})
    body = problem(response, 422, "label 'bogus'", "['personal', 'work']", type_="validation-error")
    assert body["errors"] == [{"line": 1, "message": "label 'bogus' is not one of task 'notes''s labels "
                                                     "['personal', 'work']"}]
    assert ws.snapshot() == before


def test_label_outside_the_set_in_a_file_keeps_the_good_rows_and_names_the_line(ws, john, before):
    body = "text,label\nInvoice 8,work\nZoo 2,holiday\n"
    response = ws.client.post(UPLOAD, headers={**john, "Content-Type": "text/csv"}, content=body)
    assert response.status_code == 200
    assert response.json()["errors"] == [
        {"line": 3, "message": "label 'holiday' is not one of task 'notes''s labels ['personal', 'work']"}]
    assert ws.snapshot()["labels"] == before["labels"] + [("john", TASK, "Invoice 8", "work", None, None)]


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text(ws, john, before, text):
    response = ws.client.post(UPLOAD, headers=john, json={"labels": [{"text": text, "label": "work"}]})
    problem(response, 422, "text is empty")
    assert ws.snapshot() == before


def test_text_over_the_length_limit(ws, john, before, settings):
    long = "x" * (settings.max_text_chars + 1)
    response = ws.client.post(UPLOAD, headers=john, json={"labels": [{"text": long, "label": "work"}]})
    problem(response, 422, f"text is {len(long)} characters, over the limit of {settings.max_text_chars}")
    predict = ws.client.post(f"/tasks/{TASK}/users/john/predict", headers=john, json={"texts": ["ok", long]})
    problem(predict, 422, f"text 1: text is {len(long)} characters")
    assert ws.snapshot() == before


def test_batch_over_the_row_limit(ws, john, before, settings):
    too_many = settings.max_batch_rows + 1
    labels = [{"text": f"Invoice {i}", "label": "work"} for i in range(too_many)]
    problem(ws.client.post(UPLOAD, headers=john, json={"labels": labels}), 413,
            f"{too_many} rows is over the limit of {settings.max_batch_rows}", type_="payload-too-large")
    csv_body = "text,label\n" + "".join(f"Invoice {i},work\n" for i in range(too_many))
    problem(ws.client.post(UPLOAD, headers={**john, "Content-Type": "text/csv"}, content=csv_body), 413,
            f"label file has {too_many} rows, over the limit of {settings.max_batch_rows}")
    problem(ws.client.post(f"/tasks/{TASK}/users/john/predict", headers=john, json={"texts": ["x"] * too_many}),
            413, f"{too_many} texts is over the limit of {settings.max_batch_rows}")
    assert ws.snapshot() == before


def test_upload_over_the_byte_limit_by_content_length(ws, john, before, settings):
    body = "text,label\n" + "x" * settings.max_upload_bytes + ",work\n"
    response = ws.client.post(UPLOAD, headers={**john, "Content-Type": "text/csv"}, content=body)
    problem(response, 413, f"over the limit of {settings.max_upload_bytes} bytes", "Content-Length",
            type_="payload-too-large")
    assert ws.snapshot() == before


def test_upload_over_the_byte_limit_without_content_length(ws, john, before, settings):
    chunk = b"Invoice,work\n" * 1000

    def stream():  # chunked: no Content-Length, so only the bytes read can tell
        yield b"text,label\n"
        for _ in range(settings.max_upload_bytes // len(chunk) + 2):
            yield chunk

    response = ws.client.post(UPLOAD, headers={**john, "Content-Type": "text/csv"}, content=stream())
    problem(response, 413, f"over the limit of {settings.max_upload_bytes} bytes", "received so far")
    assert ws.snapshot() == before


def test_multipart_file_over_the_byte_limit(ws, john, before, settings):
    data = b"text,label\n" + b"Invoice,work\n" * (settings.max_upload_bytes // 13 + 1)
    response = ws.client.post(UPLOAD, headers=john, files={"file": ("big.csv", data, "text/csv")})
    problem(response, 413, f"over the limit of {settings.max_upload_bytes} bytes")
    assert ws.snapshot() == before


def test_malformed_json_body_names_the_position(ws, john, before):
    broken = '{"labels": [{"text": "Invoice 8", "label": "work"},\n  {"text": }]}'
    body = problem(ws.client.post(UPLOAD, headers={**john, "Content-Type": "application/json"}, content=broken),
                   400, "not valid JSON", "line 2 column 12", type_="malformed-json")
    assert body["errors"][0]["line"] == 2 and body["errors"][0]["column"] == 12
    # A route whose body FastAPI parses reports it the same way.
    problem(ws.client.post(f"/tasks/{TASK}/users/john/predict", headers={**john, "Content-Type": "application/json"},
                           content='{"texts": ["a",]}'), 400, "line 1 column 16", type_="malformed-json")
    assert ws.snapshot() == before


def test_json_of_the_wrong_shape_names_the_field(ws, john, before):
    response = ws.client.post(UPLOAD, headers=john, json={"labels": [{"text": "Invoice 8"}]})
    body = problem(response, 422, "body.labels.0.label")
    assert body["errors"][0]["loc"] == ["body", "labels", 0, "label"]
    problem(ws.client.post(f"/tasks/{TASK}/users/john/predict", headers=john, json={"text": "x"}), 422, "body.texts")
    assert ws.snapshot() == before


def test_malformed_jsonl_names_the_lines(ws, john, before):
    body = '{"text": "Invoice 8", "label": "work"}\n{"text": "Zoo 2", "label": \n[1, 2]\n{"label": "work"}\n'
    response = ws.client.post(UPLOAD, headers={**john, "Content-Type": "application/jsonl"}, content=body)
    assert response.status_code == 200, response.text
    errors = response.json()["errors"]
    assert [error["line"] for error in errors] == [2, 3, 4]
    assert "invalid JSON" in errors[0]["message"]
    assert "expected a JSON object" in errors[1]["message"]
    assert "missing field 'text'" in errors[2]["message"]
    assert len(ws.snapshot()["labels"]) == len(before["labels"]) + 1

    all_bad = ws.client.post(UPLOAD, headers={**john, "Content-Type": "application/jsonl"}, content='{"text": \nnope\n')
    problem(all_bad, 422, "no label row was accepted", "line 1: invalid JSON", "line 2: invalid JSON")


def test_malformed_csv_names_the_lines(ws, john, before):
    body = 'text,label\n"never closed,work\n'
    problem(ws.client.post(UPLOAD, headers={**john, "Content-Type": "text/csv"}, content=body), 422, "line 2")
    body = "text,label\nInvoice 8,work,extra\nZoo 2\n"
    response = problem(ws.client.post(UPLOAD, headers={**john, "Content-Type": "text/csv"}, content=body), 422)
    assert [(error["line"], error["message"]) for error in response["errors"]] == [
        (2, "record has 3 fields but the header has 2"), (3, "record has 1 fields but the header has 2")]
    no_label = ws.client.post(UPLOAD, headers={**john, "Content-Type": "text/csv"}, content="text\nInvoice 8\n")
    problem(no_label, 422, "CSV header is missing column(s) ['label']")
    assert ws.snapshot() == before


def test_file_that_is_not_utf8(ws, john, before):
    response = ws.client.post(UPLOAD, headers={**john, "Content-Type": "text/csv"},
                              content=b"text,label\ncaf\xe9,work\n")
    problem(response, 422, "not UTF-8", "byte 0xe9", "line 2")
    assert ws.snapshot() == before


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_wrong_content_type(ws, john, before, content_type):
    headers = {**john, **({"Content-Type": content_type} if content_type else {})}
    response = ws.client.post(UPLOAD, headers=headers, content=b"text,label\nInvoice 8,work\n")
    body = problem(response, 415, "Content-Type", type_="unsupported-media-type")
    if content_type:
        assert repr(content_type) in body["detail"]
    assert ws.snapshot() == before


@pytest.mark.parametrize(("path", "content_type"), [
    (f"/tasks/{TASK}/users/john/predict", "text/plain"),
    ("/predict", "application/x-www-form-urlencoded"),
    (f"/tasks/{TASK}/users/john/jobs", "text/csv"),
])
def test_json_routes_refuse_other_content_types(ws, john, before, path, content_type):
    response = ws.client.post(path, headers={**john, "Content-Type": content_type}, content=b'{"texts": ["x"]}')
    problem(response, 415, f"Content-Type {content_type!r} is not supported", "application/json")
    assert ws.snapshot() == before


def test_prediction_for_a_user_without_adapter(ws, john, before):
    response = ws.client.post(f"/tasks/{TASK}/users/john/predict", headers=john, json={"texts": ["Invoice 9"]})
    body = problem(response, 404, "user 'john' has no trained adapter for task 'notes'", type_="no-adapter")
    assert body["instance"] == f"/tasks/{TASK}/users/john/predict"
    mixed = ws.client.post("/predict", headers=john, json={"rows": [{"user": "john", "task": TASK, "text": "x"}]})
    problem(mixed, 404, type_="no-adapter")
    assert ws.snapshot() == before


def test_no_texts_to_predict(ws, john, before):
    problem(ws.client.post(f"/tasks/{TASK}/users/john/predict", headers=john, json={"texts": []}), 422,
            "no texts to predict")
    problem(ws.client.post(f"/tasks/{TASK}/users/john/predict", headers=john, json={"texts": ["a", " "]}), 422,
            "text 1: text is empty")
    assert ws.snapshot() == before


def test_unknown_route_and_wrong_method_are_problems(client):
    problem(client.get("/nope", headers=ADMIN), 404, "no route GET /nope")
    response = client.put("/tasks", headers=ADMIN)
    problem(response, 405, type_="method-not-allowed")
    assert response.headers["allow"]  # Starlette names the methods of the first route on the path


@pytest.mark.parametrize(("error", "status", "type_"), [
    (errors.NotFoundError("task 'x' does not exist"), 404, "not-found"),
    (errors.NoAdapterError("user 'x' has no trained adapter"), 404, "no-adapter"),
    (errors.ConflictError("task 'x' already exists"), 409, "conflict"),
    (errors.ValidationError("bad rows", errors=[{"line": 3, "message": "text is empty"}]), 422, "validation-error"),
    (errors.PayloadTooLargeError("1001 rows is over the limit"), 413, "payload-too-large"),
    (errors.PermissionDeniedError("not yours"), 403, "forbidden"),
    (errors.AdapterError("adapter 'x' is corrupt"), 503, "adapter-unavailable"),
    (errors.ConfigurationError("bnb needs a GPU"), 500, "configuration-error"),
])
def test_every_domain_error_maps_to_its_status(tmp_path, error, status, type_):
    app = create_app(make_settings(tmp_path))

    def fail() -> None:
        raise error

    app.add_api_route("/boom", fail)
    with TestClient(app) as client:
        body = problem(client.get("/boom"), status, str(error), type_=type_)
    assert body.get("errors") == (error.errors or None if isinstance(error, errors.ValidationError) else None)
