"""Constants and the ``Workspace`` helper of the API tests (a module, not the conftest, so tests can import it)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func
from sqlmodel import Session, select

from localize.api.app import create_app
from localize.db.models import AdapterVersion, Job, Label, Task, Text, User
from localize.settings import Settings
from localize.worker import Worker

ADMIN_KEY = "admin-test-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
TRAINING = {"method": "head", "max_epochs": 5}
LABELS = ["personal", "work"]
TASK = "notes"

_VENDORS = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises"]
_PLACES = ["the pizzeria", "grandma's house", "the cinema", "the beach bar", "the zoo", "the bakery"]
WORK = [f"Invoice {100 + i} from {v} for office printer paper" for i, v in enumerate(_VENDORS)]
WORK += [f"Quarterly VAT payment for the company, supplier {v}" for v in _VENDORS]
PERSONAL = [f"Dinner with my family at {p}" for p in _PLACES]
PERSONAL += [f"Birthday present for my sister, bought at {p}" for p in _PLACES]
# Interleaved, so every prefix holds both classes. John files them as they are; Jane the opposite way.
TEXTS = [text for pair in zip(WORK, PERSONAL) for text in pair]
JOHN_LABELS = ["work", "personal"] * len(WORK)
JANE_LABELS = ["personal", "work"] * len(WORK)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def rows(texts: list[str], labels: list[str]) -> list[dict[str, str]]:
    return [{"text": text, "label": label} for text, label in zip(texts, labels)]


def make_settings(home: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"home": home, "admin_key": ADMIN_KEY, "max_text_chars": 1000, "max_batch_rows": 100,
                              "max_upload_bytes": 64_000}
    return Settings(**{**values, **overrides})


class Workspace:
    """A running app plus the calls tests repeat."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.runtime = client.app.state.runtime

    # -- factories ------------------------------------------------------------------------------------------------
    def create_task(self, name: str = TASK, labels: list[str] | None = None) -> dict:
        response = self.client.post("/tasks", json={"name": name, "labels": labels or LABELS}, headers=ADMIN)
        assert response.status_code == 201, response.text
        return response.json()

    def create_user(self, name: str) -> dict[str, str]:
        """Creates ``name`` and returns the headers that authenticate as them."""
        created = self.client.post("/users", json={"name": name}, headers=ADMIN)
        assert created.status_code in (201, 409), created.text
        key = self.client.post(f"/users/{name}/keys", headers=ADMIN)
        assert key.status_code == 201, key.text
        return bearer(key.json()["api_key"])

    def upload(self, user: str, labels: list[dict], *, task: str = TASK, headers: dict | None = None) -> dict:
        response = self.client.post(f"/tasks/{task}/users/{user}/labels", json={"labels": labels},
                                    headers=headers or ADMIN)
        assert response.status_code == 200, response.text
        return response.json()

    def queue(self, user: str, *, task: str = TASK, headers: dict | None = None, args: dict | None = None) -> dict:
        response = self.client.post(f"/tasks/{task}/users/{user}/jobs", json=args or TRAINING,
                                    headers=headers or ADMIN)
        assert response.status_code == 202, response.text
        return response.json()

    def run_jobs(self) -> list[int]:
        """Runs every queued job, as a worker process would."""
        worker, ran = Worker(self.runtime), []
        while (job_id := worker.run_once()) is not None:
            ran.append(job_id)
        return ran

    def train(self, user: str, *, task: str = TASK, headers: dict | None = None) -> dict:
        job = self.queue(user, task=task, headers=headers)
        assert job["id"] in self.run_jobs()
        done = self.client.get(f"/jobs/{job['id']}", headers=ADMIN).json()
        assert done["state"] == "succeeded", done
        return done

    # -- what is stored -------------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything a rejected request must leave alone."""
        with Session(self.runtime.database) as session:
            labels = session.exec(
                select(User.name, Task.name, Text.body, Label.label, Label.item, Label.split)
                .join(User, User.id == Label.user_id).join(Task, Task.id == Label.task_id)
                .join(Text, Text.id == Label.text_id).order_by(Label.id)
            ).all()
            return {
                "labels": [tuple(row) for row in labels],
                "texts": session.exec(select(func.count()).select_from(Text)).one(),
                "users": sorted(session.exec(select(User.name)).all()),
                "keys": sorted(str(key) for key in session.exec(select(User.api_key_hash)).all()),
                "tasks": sorted(session.exec(select(Task.name)).all()),
                "jobs": [(job.id, job.state, job.cancel_requested)
                         for job in session.exec(select(Job).order_by(Job.id))],
                "adapters": [(row.id, row.user_id, row.version, row.is_active)
                             for row in session.exec(select(AdapterVersion).order_by(AdapterVersion.id))],
            }

    def count(self, table: type) -> int:
        with Session(self.runtime.database) as session:
            return session.exec(select(func.count()).select_from(table)).one()


class Trained(Workspace):
    """The shared workspace where John and Jane each have a trained adapter."""

    john: dict[str, str]
    jane: dict[str, str]
    jobs: dict[str, dict]


@contextmanager
def running(settings: Settings) -> Iterator[Workspace]:
    with TestClient(create_app(settings)) as client:
        yield Workspace(client)
