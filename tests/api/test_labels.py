"""Label uploads in every accepted shape, idempotent re-uploads, paging and deletion."""
from __future__ import annotations

import json

from api_support import ADMIN, TASK, Workspace

from localize.db.models import Label, Text, User

URL = f"/tasks/{TASK}/users/john/labels"


def stored(ws: Workspace, user: str = "john") -> dict[str, str]:
    return {text: label for name, _, text, label, *_ in ws.snapshot()["labels"] if name == user}


def test_json_upload_reports_created_rows_and_stores_them(ws, john):
    response = ws.client.post(URL, headers=john, json={"labels": [
        {"text": "Invoice 7 from Globex", "label": "work", "item": "n-1", "split": "train"},
        {"text": "Dinner at the zoo", "label": "personal"},
    ]})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 2, "created": 2, "updated": [], "unchanged": 0, "errors": []}
    assert stored(ws) == {"Invoice 7 from Globex": "work", "Dinner at the zoo": "personal"}
    listing = ws.client.get(URL, headers=john).json()
    assert listing["count"] == 2
    assert listing["data"][0] | {"id": 0, "updated_at": ""} == {
        "id": 0, "user": "john", "task": TASK, "text": "Invoice 7 from Globex", "label": "work", "item": "n-1",
        "split": "train", "updated_at": ""}


def test_reupload_updates_the_label_and_reports_the_old_one(ws, john):
    ws.upload("john", [{"text": "Dinner at the zoo", "label": "personal"}, {"text": "VAT return", "label": "work"}])
    response = ws.client.post(URL, headers=john, json={"labels": [
        {"text": "VAT return", "label": "work"}, {"text": "Dinner at the zoo", "label": "work"}]})
    assert response.status_code == 200
    report = response.json()
    assert report["created"] == 0 and report["unchanged"] == 1 and report["accepted"] == 2
    assert report["updated"] == [{"line": 2, "user": "john", "text": "Dinner at the zoo", "old_label": "personal",
                                  "new_label": "work"}]
    assert stored(ws) == {"Dinner at the zoo": "work", "VAT return": "work"}
    assert ws.count(Label) == 2


def test_a_text_two_users_label_is_stored_once(ws, john, jane):
    ws.upload("john", [{"text": "Dinner at the zoo", "label": "personal"}], headers=john)
    ws.upload("jane", [{"text": "Dinner at the zoo", "label": "work"}], headers=jane)
    assert ws.count(Text) == 1
    assert ws.count(Label) == 2
    assert stored(ws, "john") == {"Dinner at the zoo": "personal"}
    assert stored(ws, "jane") == {"Dinner at the zoo": "work"}


def test_raw_jsonl_body_without_user_field(ws, john):
    body = '{"text": "Invoice 7", "label": "work"}\n\n{"text": "Zoo trip", "label": "personal", "user": "john"}\n'
    for content_type in ("application/jsonl", "application/x-ndjson"):
        response = ws.client.post(URL, headers={**john, "Content-Type": content_type}, content=body.encode())
        assert response.status_code == 200, response.text
    assert stored(ws) == {"Invoice 7": "work", "Zoo trip": "personal"}


def test_raw_csv_body_without_user_column_keeps_file_line_numbers(ws, john):
    body = 'text,label\n"Invoice 7,\nsecond line",work\n\nZoo trip,bogus\nDinner,personal\n'
    response = ws.client.post(URL, headers={**john, "Content-Type": "text/csv; charset=utf-8"}, content=body)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["created"] == 2
    # The header is line 1, the quoted record spans lines 2-3, line 4 is blank.
    assert [error["line"] for error in report["errors"]] == [5]
    assert "label 'bogus'" in report["errors"][0]["message"]
    assert stored(ws) == {"Invoice 7,\nsecond line": "work", "Dinner": "personal"}


def test_multipart_file_upload_csv_and_jsonl(ws, john):
    csv_file = ("labels.csv", b"user,text,label\njohn,Invoice 7,work\n", "text/csv")
    response = ws.client.post(URL, headers=john, files={"file": csv_file})
    assert response.status_code == 200, response.text
    jsonl_file = ("labels.jsonl", json.dumps({"text": "Zoo trip", "label": "personal"}).encode(),
                  "application/octet-stream")
    response = ws.client.post(URL, headers=john, files={"file": jsonl_file})
    assert response.status_code == 200, response.text
    assert stored(ws) == {"Invoice 7": "work", "Zoo trip": "personal"}


def test_multipart_without_file_field_is_422(ws, john):
    response = ws.client.post(URL, headers=john, data={"labels": "x"}, files={"other": ("a.csv", b"x")})
    assert response.status_code == 422
    assert "file field named 'file'" in response.json()["detail"]
    assert ws.count(Label) == 0


def test_row_for_another_user_is_rejected_and_the_rest_stored(ws, john, jane):  # noqa: ARG001
    body = "user,text,label\njohn,Invoice 7,work\njane,Zoo trip,personal\n"
    response = ws.client.post(URL, headers={**john, "Content-Type": "text/csv"}, content=body)
    assert response.status_code == 200
    assert response.json()["errors"] == [
        {"line": 3, "message": "row is for user 'jane', this upload is for user 'john'"}]
    assert stored(ws, "john") == {"Invoice 7": "work"}
    assert stored(ws, "jane") == {}


def test_json_row_for_another_user_is_rejected(ws, john):
    response = ws.client.post(URL, headers=john, json={"labels": [
        {"text": "Invoice 7", "label": "work"}, {"user": "jane", "text": "Zoo", "label": "personal"}]})
    assert response.status_code == 200
    assert response.json()["errors"] == [
        {"line": 2, "message": "row is for user 'jane', this upload is for user 'john'"}]
    assert ws.snapshot()["users"] == ["john"]


def test_admin_upload_creates_the_user(ws, task):  # noqa: ARG001
    assert ws.count(User) == 0
    ws.upload("newcomer", [{"text": "Invoice 7", "label": "work"}])
    assert ws.snapshot()["users"] == ["newcomer"]
    assert stored(ws, "newcomer") == {"Invoice 7": "work"}


def test_admin_bulk_upload_json_and_csv(ws, task):  # noqa: ARG001
    response = ws.client.post(f"/tasks/{TASK}/labels", headers=ADMIN, json={"labels": [
        {"user": "john", "text": "Zoo trip", "label": "personal"},
        {"user": "jane", "text": "Zoo trip", "label": "work"}]})
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 2
    body = "user,text,label\njohn,Invoice 7,work\nbad name,Invoice 8,work\n"
    response = ws.client.post(f"/tasks/{TASK}/labels", headers={**ADMIN, "Content-Type": "text/csv"}, content=body)
    assert response.status_code == 200
    assert response.json()["created"] == 1
    assert response.json()["errors"][0]["line"] == 3 and "'bad name'" in response.json()["errors"][0]["message"]
    assert stored(ws, "john") == {"Zoo trip": "personal", "Invoice 7": "work"}
    assert stored(ws, "jane") == {"Zoo trip": "work"}
    assert ws.count(Text) == 2


def test_list_labels_pages(ws, john):
    ws.upload("john", [{"text": f"Invoice {i}", "label": "work"} for i in range(5)])
    first = ws.client.get(URL, params={"limit": 2}, headers=john).json()
    rest = ws.client.get(URL, params={"offset": 2, "limit": 1000}, headers=john).json()
    assert first["count"] == rest["count"] == 5
    assert [row["text"] for row in first["data"] + rest["data"]] == [f"Invoice {i}" for i in range(5)]
    too_many = ws.client.get(URL, params={"limit": 1001}, headers=john)
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "query.limit"


def test_delete_one_label_then_all(ws, john):
    ws.upload("john", [{"text": f"Invoice {i}", "label": "work"} for i in range(3)])
    label_id = ws.client.get(URL, headers=john).json()["data"][0]["id"]
    response = ws.client.delete(f"{URL}/{label_id}", headers=john)
    assert response.status_code == 200 and response.json() == {"deleted": 1}
    assert set(stored(ws)) == {"Invoice 1", "Invoice 2"}
    again = ws.client.delete(f"{URL}/{label_id}", headers=john)
    assert again.status_code == 404
    assert f"label id(s) [{label_id}] do not exist" in again.json()["detail"]
    response = ws.client.delete(URL, headers=john)
    assert response.status_code == 200 and response.json() == {"deleted": 2}
    assert ws.count(Label) == 0
