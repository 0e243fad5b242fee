"""Helpers for benchmarks that run the product in other processes: a clean environment for a child, a free port,
a workspace with one task and head adapters, and a real server started and always stopped (the end-to-end tests
start their servers with these too)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from localize.bench.context import BenchContext

ADMIN_KEY = "lk_admin_bench_0123456789"


def child_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any workspace settings of its own, pointed at ``home``, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCALIZE_") and k != "DATABASE_URL"}
    # A server started here runs as `localize serve` runs one (localize/server.py, server_environment).
    env.update({"LOCALIZE_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "LOCALIZE_FREEZE_HEAP": "true", "LOCALIZE_ENGINE_THREADS": "1"})
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_home(ctx: BenchContext, home: Path, users: list[str], *, task: str = "bench") -> None:
    """A workspace with ``task`` (the demo labels) and an active random head adapter for each of ``users``."""
    from localize.db.session import session_scope
    from localize.demo_data import LABELS
    from localize.runtime import Runtime
    from localize.services import adapters as adapter_service
    from localize.services.tasks import create_task
    from localize.services.users import create_user
    from localize.settings import Settings

    runtime = Runtime(Settings(home=home, database_url=None, adapter_store=None, base_model=None))
    runtime.upgrade_database()
    with session_scope(runtime.database) as session:
        created = create_task(session=session, name=task, labels=LABELS)
        for name, weights in zip(users, ctx.random_adapters("head", {}, len(users), seed=8)):
            user = create_user(session=session, name=name)
            stored = runtime.store.save(adapter_service.store_key(created, user), 1, weights)
            adapter_service.register_version(session=session, task=created, user=user, weights=weights,
                                             stored=stored, n_labels=0, labels_updated_at=None, activate=True)
    runtime.database.dispose()


@contextlib.contextmanager
def running_server(command: list[str], env: dict[str, str], port: int, *, start_timeout: float = 120,
                   stop_timeout: float = 20, started: Callable[[int], None] | None = None,
                   log_path: Path | None = None) -> Iterator[str]:
    """Starts ``command`` (a server listening on 127.0.0.1:``port``), waits for ``/health``, yields its URL and
    always stops it (SIGTERM, then SIGKILL to its whole process group). ``started`` is told the server's pid.
    With ``log_path`` the server's stderr is kept there, and a server that ended before it was stopped says so
    on its last line (see ``server_log_tail``)."""
    import httpx

    # stderr goes to a file, not a pipe: a server that logs under load must never block on a full pipe.
    with (open(log_path, "w+b") if log_path else tempfile.TemporaryFile()) as log:
        # A session of its own: whatever the server starts (its worker) is stopped with it, even if orphaned.
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        if started is not None:
            started(server.pid)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"server did not start: {log.read().decode(errors='replace')[-2000:]}")
                time.sleep(0.2)
            yield url
        finally:
            if server.poll() is not None:  # it ended by itself: a crash the caller's errors alone cannot explain
                log.write(f"\n{EARLY_EXIT} with code {server.returncode}\n".encode())
                log.flush()
            server.terminate()
            try:
                server.wait(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.pid, signal.SIGKILL)  # children left behind (a worker that outlived its server)


EARLY_EXIT = "[bench] the server had ended before it was stopped"


def server_log_tail(log_path: Path, characters: int = 3000) -> str:
    """The end of a server's kept log (``running_server(log_path=...)``), for a report of what went wrong."""
    try:
        return log_path.read_text(errors="replace")[-characters:]
    except FileNotFoundError:
        return ""


def uvicorn_command(port: int) -> list[str]:
    """The API app alone (no worker) under uvicorn."""
    return [sys.executable, "-m", "uvicorn", "localize.api.app:create_app", "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]


def localize_command(*args: str) -> list[str]:
    """``localize ARGS`` run by this interpreter (the same installation as this process)."""
    return [sys.executable, "-m", "localize.cli", *args]
