"""``localize serve``: the HTTP API plus, by default, one training worker in its own process, so training
never blocks request handling."""
from __future__ import annotations

import logging
import os
import signal
from types import FrameType
from typing import TYPE_CHECKING

from localize.admin_key import AdminKey, resolve_admin_key
from localize.settings import get_settings

if TYPE_CHECKING:
    from localize.supervisor import WorkerSupervisor

logger = logging.getLogger(__name__)


def serve_banner(host: str, port: int, admin: AdminKey) -> str:
    """What `serve` prints first: where the API is, and where the admin key in force came from."""
    return f"localize API on http://{host}:{port}  (docs: /docs; admin key from {admin.source})"


def run_server(
    *, host: str, port: int, with_worker: bool = True, ray_address: str | None = None, replicas: int | None = None,
    deploy: bool = True,
) -> None:
    import uvicorn

    from localize.runtime import Runtime

    admin = resolve_admin_key(get_settings())  # refuses a short key before anything starts
    server_environment(admin)
    get_settings.cache_clear()
    if ray_address:  # after the serving defaults: the prediction replicas are long-lived serving processes too
        _use_ray(ray_address, replicas=replicas, deploy=deploy)
    settings = get_settings()
    runtime = Runtime(settings)
    runtime.upgrade_database()
    print(serve_banner(host, port, admin), flush=True)
    supervisor = None
    if with_worker:
        from localize.supervisor import WorkerSupervisor

        # Training gets one of the cores; the API keeps the rest for requests.
        supervisor = WorkerSupervisor(settings, runtime.database, heartbeat=not settings.ray_address,
                                      threads=int(os.environ.get("LOCALIZE_WORKER_THREADS", "1")))
        supervisor.start()
    from localize.api.app import create_app

    app = create_app(settings)
    app.state.worker_supervisor = supervisor
    server = _server(uvicorn.Config(app, host=host, port=port, log_level="info",
                                    timeout_graceful_shutdown=HTTP_SHUTDOWN_SECONDS), supervisor)
    # uvicorn shuts down on SIGTERM and then raises it again; this handler turns that into a normal exit, so the
    # worker is stopped below instead of being orphaned by the default action (which ends the process at once).
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        if supervisor is not None:
            supervisor.stop()
        signal.signal(signal.SIGTERM, previous)
        runtime.database.dispose()
    from localize.worker import exit_now

    exit_now(0)  # everything this process opened is closed now


def server_environment(admin: AdminKey) -> None:
    """What the server process, and the worker it starts, read from the environment: the admin key in force and,
    unless the operator chose otherwise, how a serving process runs: start-up objects kept out of the collector's
    passes (localize/heap.py), and engine passes side by side with one thread each (localize/batcher.py). The
    worker sets its own threads for training."""
    os.environ["LOCALIZE_ADMIN_KEY"] = admin.key
    os.environ.setdefault("LOCALIZE_FREEZE_HEAP", "true")
    os.environ.setdefault("LOCALIZE_ENGINE_THREADS", "1")


# Open requests get this long to finish on shutdown; with the worker's grace period it stays within 10 s.
HTTP_SHUTDOWN_SECONDS = 3


def _server(config, supervisor: WorkerSupervisor | None):  # noqa: ANN001, ANN202
    """A uvicorn server that, on SIGINT or SIGTERM, asks the worker to stop at once: the worker then gives its job
    back while the HTTP side drains its requests."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if supervisor is not None:
                supervisor.request_stop(f"the server got {signal.Signals(sig).name}")
            super().handle_exit(sig, frame)

    return Server(config)


class _Stopped(Exception):
    """SIGTERM: a normal, graceful end."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped


def _use_ray(address: str, *, replicas: int | None, deploy: bool) -> None:
    """Points this process (the API) and its worker at the Ray cluster, and deploys the prediction replicas."""
    from localize.distributed.cluster import LOCAL, connect
    from localize.distributed.serving import deploy as deploy_replicas

    ray = connect(address)
    if address == LOCAL:  # the worker process joins the cluster this process just started
        address = ray.get_runtime_context().gcs_address
    os.environ["LOCALIZE_RAY_ADDRESS"] = address
    os.environ["LOCALIZE_SERVING"] = "ray"
    if replicas:
        os.environ["LOCALIZE_RAY_SERVE_REPLICAS"] = str(replicas)
    get_settings.cache_clear()
    settings = get_settings()
    if deploy:
        print(f"deploying {settings.ray_serve_replicas} prediction replica(s) on Ray at {address} ...", flush=True)
        deploy_replicas(settings, address=address)
    from localize.distributed.serving import RayPredictor

    RayPredictor(settings).handle  # fails now, with a clear message, if the application is not there
