"""Adapter versions: a new training becomes the active version, older ones can be re-activated (rollback),
inactive ones deleted."""
from __future__ import annotations

from api_support import ADMIN, JANE_LABELS, JOHN_LABELS, TASK, TEXTS, rows

from localize.db.models import AdapterVersion

ADAPTERS = f"/tasks/{TASK}/users/john/adapters"


def predicted(ws, headers) -> tuple[list[str], set[int]]:
    response = ws.client.post(f"/tasks/{TASK}/users/john/predict", json={"texts": TEXTS}, headers=headers)
    assert response.status_code == 200, response.text
    return [p["label"] for p in response.json()], {p["version"] for p in response.json()}


def test_versions_activate_rollback_and_delete(ws, john):
    ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
    ws.train("john", headers=john)
    assert predicted(ws, john) == (JOHN_LABELS, {1})

    # John changes his mind about every text; the re-upload reports the old labels, v2 learns the new ones.
    report = ws.upload("john", rows(TEXTS, JANE_LABELS), headers=john)
    assert len(report["updated"]) == len(TEXTS)
    ws.train("john", headers=john)
    listing = ws.client.get(ADAPTERS, headers=john).json()
    assert listing["count"] == 2
    assert [(v["version"], v["is_active"]) for v in listing["data"]] == [(1, False), (2, True)]
    assert listing["data"][1]["n_labels"] == len(TEXTS) and listing["data"][1]["method"] == "head"
    assert listing["data"][1]["training_args"]["max_epochs"] == 5
    assert predicted(ws, john) == (JANE_LABELS, {2})

    one = ws.client.get(f"{ADAPTERS}/1", headers=john)
    assert one.status_code == 200 and one.json()["version"] == 1 and one.json()["user"] == "john"

    rollback = ws.client.post(f"{ADAPTERS}/1/activate", headers=john)
    assert rollback.status_code == 200 and rollback.json()["is_active"] is True
    assert predicted(ws, john) == (JOHN_LABELS, {1})

    active = ws.client.delete(f"{ADAPTERS}/1", headers=john)
    assert active.status_code == 409
    assert "adapter version 1 is active and serving" in active.json()["detail"]
    assert ws.count(AdapterVersion) == 2


def test_delete_inactive_version(ws, john):
    ws.upload("john", rows(TEXTS[:8], JOHN_LABELS[:8]), headers=john)
    for _ in range(2):  # 8 labels hold no validation rows out: the retrain is activated by force
        ws.queue("john", headers=john, args={"method": "head", "max_epochs": 1, "force_activation": True})
        ws.run_jobs()
    deleted = ws.client.delete(f"{ADAPTERS}/1", headers=john)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"deleted": 1}
    assert [v["version"] for v in ws.client.get(ADAPTERS, headers=john).json()["data"]] == [2]
    assert ws.count(AdapterVersion) == 1


def test_unknown_version_is_404_naming_it(ws, john):
    for method, path in (("GET", f"{ADAPTERS}/9"), ("POST", f"{ADAPTERS}/9/activate"), ("DELETE", f"{ADAPTERS}/9")):
        response = ws.client.request(method, path, headers=john)
        assert response.status_code == 404, path
        assert response.json()["detail"] == "adapter version 9 of user 'john' in task 'notes' does not exist"


def test_no_versions_yet_is_an_empty_list(ws, john):
    response = ws.client.get(ADAPTERS, headers=john)
    assert response.status_code == 200
    assert response.json() == {"data": [], "count": 0}


def test_a_head_on_the_task_prior_names_the_prior_version_it_reads(ws, john):
    ws.upload("john", rows(TEXTS, JOHN_LABELS), headers=john)
    recipe = {"max_epochs": 3, "prior_max_epochs": 1}  # the default recipe, shorter
    queued = ws.client.post(f"/tasks/{TASK}/prior/jobs", json=recipe, headers=ADMIN)
    assert queued.status_code == 202, queued.text
    ws.queue("john", headers=john, args=recipe)
    ws.run_jobs()
    ws.queue("john", headers=john, args={"method": "head", "max_epochs": 1})  # self-contained: reads no prior
    ws.run_jobs()
    listing = ws.client.get(ADAPTERS, headers=john).json()
    assert [(v["version"], v["method"], v["prior_version"]) for v in listing["data"]] == [(1, "head", 1),
                                                                                          (2, "head", None)]
    assert ws.client.get(f"{ADAPTERS}/1", headers=john).json()["prior_version"] == 1
