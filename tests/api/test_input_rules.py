"""One set of input rules on every route: text that cannot be stored (a lone surrogate, NUL) is a 422 naming the
field, or a row error in an upload whose good rows are stored; integers past a 64-bit column are a 422, never a
database overflow; every JSON body is read by one parser that names invalid UTF-8 and too-deep nesting."""
from __future__ import annotations

import re

from api_support import ADMIN, TASK
from test_errors import problem

from localize.validation import MAX_DB_INT, MAX_ID, MAX_JSON_DEPTH, NONBLANK_TEXT_PATTERN

JSON = {"content-type": "application/json"}
SURROGATE = "\\ud800"  # a JSON escape, sent as these six characters: it decodes to half a character


def raw(client, method: str, path: str, body: str | bytes, headers: dict, content_type: str = "application/json"):
    data = body.encode("utf-8") if isinstance(body, str) else body
    return client.request(method, path, content=data, headers={**headers, "content-type": content_type})


def test_a_task_with_a_lone_surrogate_is_refused_and_nothing_is_stored(ws):
    response = raw(ws.client, "POST", "/tasks", '{"name": "surrogate-task", "labels": ["a' + SURROGATE + '", "b"]}',
                   ADMIN)
    body = problem(response, 422, "lone surrogate U+D800", type_="validation-error")
    assert body["errors"][0]["field"] == "body.labels.0"
    assert ws.client.get("/tasks", headers=ADMIN).json() == {"data": [], "count": 0}
    assert ws.client.get("/tasks/surrogate-task", headers=ADMIN).status_code == 404
    response = raw(ws.client, "POST", "/tasks", '{"name": "t", "labels": ["a", "b"], "description": "x\\u0000"}',
                   ADMIN)
    assert problem(response, 422, "NUL")["errors"][0]["field"] == "body.description"


def test_an_upload_row_with_a_lone_surrogate_is_a_row_error_and_the_good_rows_are_stored(ws, john):
    path = f"/tasks/{TASK}/users/john/labels"
    body = ('{"labels": [{"text": "lone \\udc00 x", "label": "work"}, {"text": "good", "label": "work"}, '
            '{"text": "nul \\u0000", "label": "work"}]}')
    report = raw(ws.client, "POST", path, body, john).json()
    assert report["created"] == 1
    assert [(error["line"], error["message"].split(" at ")[0]) for error in report["errors"]] == [
        (1, "text holds a lone surrogate U+DC00"), (3, "text holds a NUL character (\\u0000)")]
    jsonl = '{"text": "lone \\udc00 y", "label": "work"}\n{"text": "good too", "label": "personal"}\n'
    report = raw(ws.client, "POST", path, jsonl, john, "application/jsonl").json()
    assert report["created"] == 1 and report["errors"][0]["line"] == 1
    assert "field 'text' holds a lone surrogate U+DC00" in report["errors"][0]["message"]
    listed = ws.client.get(path, headers=john).json()
    assert [row["text"] for row in listed["data"]] == ["good", "good too"]


UNSTORABLE_TEXT = [
    (f"/tasks/{TASK}/users/john/predict", '{"texts": ["ok", "x' + SURROGATE + '"]}', "body.texts.1"),
    ("/predict", '{"rows": [{"user": "john", "task": "' + TASK + '", "text": "x' + SURROGATE + '"}]}',
     "body.rows.0.text"),
    ("/predict", '{"rows": [{"user": "jo' + SURROGATE + '", "task": "' + TASK + '", "text": "x"}]}',
     "body.rows.0.user"),
    ("/predict", '{"rows": [{"user": "john", "task": "t' + SURROGATE + '", "text": "x"}]}', "body.rows.0.task"),
    (f"/tasks/{TASK}/fanout", '{"text": "x' + SURROGATE + '"}', "body.text"),
    (f"/tasks/{TASK}/fanout", '{"text": "x", "users": ["john\\u0000"]}', "body.users.0"),
]


def test_text_that_cannot_be_stored_is_a_422_naming_the_field(ws, john):
    for path, body, field in UNSTORABLE_TEXT:
        response = raw(ws.client, "POST", path, body, ADMIN)
        problem_body = problem(response, 422, type_="validation-error")
        assert field in [error["field"] for error in problem_body["errors"]], (path, problem_body)


HUGE_INTEGERS = [
    f"/users?offset={MAX_DB_INT + 1}",
    f"/jobs?offset={MAX_DB_INT + 1}",
    f"/jobs/{MAX_DB_INT + 1}",
    f"/jobs/{MAX_DB_INT + 1}/cancel",
    f"/tasks/{TASK}/users/john/labels?offset={MAX_DB_INT + 1}",
    f"/tasks/{TASK}/users/john/labels/{MAX_DB_INT + 1}",
    f"/tasks/{TASK}/users/john/adapters/{MAX_DB_INT + 1}",
    f"/tasks/{TASK}/users/john/adapters/{MAX_DB_INT + 1}/activate",
    f"/tasks/{TASK}/users/john/labels/-1",
]


def test_integers_past_a_64_bit_column_are_a_422_for_a_users_own_key_too(ws, john):
    for path in HUGE_INTEGERS:
        method = "POST" if path.endswith(("/cancel", "/activate")) else "GET"
        if "/labels/" in path:
            method = "DELETE"
        for headers in ([john, ADMIN] if "/users?" not in path else [ADMIN]):
            body = problem(ws.client.request(method, path, headers=headers), 422, type_="validation-error")
            assert body["errors"][0]["loc"][0] in ("path", "query"), (path, body)


def test_the_largest_id_is_a_plain_404_and_one_more_a_422_on_every_database(ws, john):
    problem(ws.client.get(f"/jobs/{MAX_ID}", headers=john), 404)
    problem(ws.client.get(f"/tasks/{TASK}/users/john/adapters/{MAX_ID}", headers=john), 404)
    problem(ws.client.delete(f"/tasks/{TASK}/users/john/labels/{MAX_ID}", headers=john), 404)
    for path in (f"/jobs/{MAX_ID + 1}", f"/tasks/{TASK}/users/john/adapters/{MAX_ID + 1}"):
        problem(ws.client.get(path, headers=john), 422)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


JSON_ROUTES = [f"/tasks/{TASK}/users/john/labels", f"/tasks/{TASK}/labels", "/users", "/tasks", "/predict",
               f"/tasks/{TASK}/users/john/predict", f"/tasks/{TASK}/fanout", f"/tasks/{TASK}/users/john/jobs",
               f"/tasks/{TASK}/prior/jobs", f"/tasks/{TASK}/jobs/stale"]


def test_deep_json_is_a_400_naming_the_nesting_on_every_json_route(ws, john):
    for path in JSON_ROUTES:
        for depth in (MAX_JSON_DEPTH + 1, 3000):
            response = raw(ws.client, "POST", path, '{"labels": ' + nested(depth) + "}", ADMIN)
            problem(response, 400, f"nested more than {MAX_JSON_DEPTH} levels deep", type_="malformed-json")


def test_invalid_utf8_json_is_a_400_naming_the_byte(ws, john):
    for path in JSON_ROUTES:
        response = raw(ws.client, "POST", path, b'{"name": "\xff"}', ADMIN)
        problem(response, 400, "not UTF-8: byte 0xff at offset 10", type_="malformed-json")


def test_nan_is_not_json(ws, john):
    response = raw(ws.client, "POST", f"/tasks/{TASK}/users/john/jobs", '{"learning_rate": NaN}', ADMIN)
    problem(response, 400, "NaN is not valid JSON", type_="malformed-json")


def test_a_deep_jsonl_line_is_a_row_error(ws, john):
    rows = '{"text": ' + nested(3000) + ', "label": "work"}\n{"text": "fine", "label": "work"}\n'
    report = raw(ws.client, "POST", f"/tasks/{TASK}/users/john/labels", rows, john, "application/jsonl").json()
    assert report["created"] == 1
    assert report["errors"][0]["line"] == 1 and "nested more than" in report["errors"][0]["message"]


def test_the_schema_states_the_rules(client, settings):
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    texts = schemas["PredictRequest"]["properties"]["texts"]
    assert texts["items"]["pattern"] == NONBLANK_TEXT_PATTERN
    assert texts["maxItems"] == settings.max_batch_rows and texts["items"]["maxLength"] == settings.max_text_chars
    job = document["paths"]["/jobs/{job_id}"]["get"]["parameters"][0]["schema"]
    assert job["maximum"] == MAX_ID and job["minimum"] == 1
    queue = document["paths"]["/tasks/{task}/users/{user}/jobs"]["post"]
    assert queue["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/TrainingRequest"}
    assert {"400", "401", "409", "413", "415", "422", "429"} <= set(queue["responses"])
    lora = next(variant for variant in schemas["TrainingRequest"]["anyOf"]
                if variant["properties"].get("method", {}).get("enum") == ["lora"])
    assert lora["properties"]["max_epochs"] == {"type": "integer", "minimum": 1, "maximum": 1000}
    options = lora["properties"]["method_options"]["anyOf"][0]["properties"]
    assert options["r"]["maximum"] == 256 and options["layers"]["anyOf"][0]["items"]["maximum"] == 5


def test_a_405_allows_exactly_the_methods_the_document_lists_for_the_path(client):
    document = client.get("/openapi.json").json()
    for path, item in document["paths"].items():
        documented = {method.upper() for method in item}
        unsupported = next(method for method in ("PUT", "PATCH", "DELETE", "POST") if method not in documented)
        concrete = re.sub(r"\{(\w+)\}", lambda name: {"task": TASK, "user": "john"}.get(name[1], "1"), path)
        response = client.request(unsupported, concrete, headers=ADMIN)
        problem(response, 405, f"{unsupported} is not allowed")
        allowed = {method.strip() for method in response.headers["Allow"].split(",")} - {"HEAD"}
        assert allowed == documented, (path, response.headers["Allow"])


def test_every_integer_a_request_carries_is_bounded_in_the_document_and_past_it_is_a_422(client):
    document = client.get("/openapi.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                for schema in parameter["schema"].get("anyOf", [parameter["schema"]]):
                    if schema.get("type") == "integer":
                        assert schema["maximum"] <= MAX_DB_INT, (method, path, parameter["name"])
    # The last line of defence: a route whose integer has no bound of its own still answers 422, not 500.
    response = client.get("/jobs", params={"offset": 0}, headers=ADMIN)
    assert response.status_code == 200
    from fastapi import APIRouter

    unbounded = APIRouter()

    @unbounded.get("/probe/{row_id}")
    def probe(row_id: int) -> dict:
        from sqlmodel import Session, select

        from localize.db.models import Job

        with Session(client.app.state.runtime.database) as session:
            return {"found": len(session.exec(select(Job).where(Job.id == row_id)).all())}

    client.app.include_router(unbounded)
    assert client.get("/probe/1").json() == {"found": 0}
    problem(client.get(f"/probe/{MAX_DB_INT + 1}"), 422, "beyond what the database can store")
