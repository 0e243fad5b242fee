"""``/ready`` under ``localize serve`` reports the supervised training worker: not ready while it has not sent a
heartbeat, while its heartbeat is stale, or while it is dead; ready, with its heartbeat, otherwise."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from localize.db.models import WorkerHeartbeat, utcnow
from localize.db.session import session_scope
from localize.services import workers as worker_service
from localize.supervisor import WorkerSupervisor


@pytest.fixture
def database_backend() -> str:
    return "sqlite"


class StandInWorker:
    def __init__(self, worker_id: str, threads: int | None) -> None:  # noqa: ARG002
        self.worker_id, self.pid, self.exitcode = worker_id, 4242, None
        self.ended = threading.Event()

    def start(self) -> None:
        pass

    def is_alive(self) -> bool:
        return self.exitcode is None

    def join(self, timeout: float | None = None) -> None:
        self.ended.wait(timeout)

    def terminate(self) -> None:
        self.exitcode = -15
        self.ended.set()

    kill = terminate


def test_ready_follows_the_supervised_workers_heartbeat(client) -> None:
    runtime = client.app.state.runtime
    assert client.get("/ready").json()["worker"] is None  # no supervised worker: readiness does not depend on one

    settings = runtime.settings.model_copy(update={"worker_dead_after_seconds": 30.0, "worker_restart_seconds": 60.0})
    workers: list[StandInWorker] = []
    supervisor = WorkerSupervisor(settings, runtime.database, poll_seconds=0.02,
                                  spawn=lambda *args: workers.append(StandInWorker(*args)) or workers[-1])
    client.app.state.worker_supervisor = supervisor
    supervisor.start()
    try:
        deadline = time.monotonic() + 10
        while not workers:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        worker_id = workers[0].worker_id

        starting = client.get("/ready")
        assert starting.status_code == 503
        assert starting.json()["detail"] == "the training worker is starting: it has not sent a heartbeat yet"

        with session_scope(runtime.database) as session:
            worker_service.record_heartbeat(session=session, worker_id=worker_id, job_id=7)
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        worker = ready.json()["worker"]
        assert (worker["id"], worker["alive"], worker["job_id"], worker["restarts"]) == (worker_id, True, 7, 0)
        assert 0 <= worker["heartbeat_age_seconds"] < 30

        with session_scope(runtime.database) as session:
            session.exec(update(WorkerHeartbeat).values(heartbeat_at=utcnow() - timedelta(seconds=45)))
        stale = client.get("/ready")
        assert stale.status_code == 503
        assert stale.json()["detail"].startswith(f"the training worker {worker_id} sent its last heartbeat 45 s ago")
        assert stale.json()["detail"].endswith("(stale after 30 s)")

        with session_scope(runtime.database) as session:
            worker_service.record_heartbeat(session=session, worker_id=worker_id)
        workers[0].terminate()  # dies; its restart waits a minute
        deadline = time.monotonic() + 10
        while (dead := client.get("/ready")).status_code == 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert dead.json()["detail"] == ("the training worker died (killed by SIGTERM) and is being restarted "
                                         "(0 restarts)")
    finally:
        supervisor.stop()
