"""A workspace for the labelling-loop tests: a pool of texts, a crowd that labelled some, and a learner."""
from __future__ import annotations

from api_support import ADMIN, JANE_LABELS, JOHN_LABELS, TASK, TEXTS, Workspace, rows

# Texts only the pool holds (nobody labelled them yet).
POOL = [f"Invoice {200 + i} for toner cartridges" for i in range(4)] + \
       [f"Picnic with my cousins at the lake, day {i}" for i in range(4)]


def build_loop(ws: Workspace) -> dict[str, dict[str, str]]:
    """Task ``notes``: John and Jane labelled TEXTS (the crowd), Mia labelled the first six the way John did,
    and the pool holds POOL too. Returns each user's headers."""
    ws.create_task()
    keys = {name: ws.create_user(name) for name in ("john", "jane", "mia")}
    ws.upload("john", rows(TEXTS, JOHN_LABELS))
    ws.upload("jane", rows(TEXTS, JANE_LABELS))
    ws.upload("mia", rows(TEXTS[:6], JOHN_LABELS[:6]))
    response = ws.client.post(f"/tasks/{TASK}/texts", json={"texts": POOL}, headers=ADMIN)
    assert response.status_code == 200, response.text
    return keys


def queue(ws: Workspace, user: str, headers: dict, **params) -> dict:
    response = ws.client.get(f"/tasks/{TASK}/users/{user}/queue", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()
