"""``localize serve``: the HTTP API plus, by default, one training worker in its own process, so training
never blocks request handling."""
from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from localize.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def ensure_admin_key(settings: Settings) -> str:
    """The configured admin key, or one generated once into ``<home>/admin_key`` (mode 0600) for embedded use."""
    if settings.admin_key:
        return settings.admin_key
    path = Path(settings.home) / "admin_key"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "lk_admin_" + secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key + "\n")
    return key


def run_server(
    *, host: str, port: int, with_worker: bool = True, ray_address: str | None = None, replicas: int | None = None,
    deploy: bool = True,
) -> None:
    import uvicorn

    from localize.runtime import Runtime

    if ray_address:
        _use_ray(ray_address, replicas=replicas, deploy=deploy)
    settings = get_settings()
    key = ensure_admin_key(settings)
    os.environ["LOCALIZE_ADMIN_KEY"] = key
    get_settings.cache_clear()
    settings = get_settings()
    Runtime(settings).upgrade_database()
    key_source = "LOCALIZE_ADMIN_KEY" if settings.admin_key and not (Path(settings.home) / "admin_key").is_file() else \
        str(Path(settings.home) / "admin_key")
    print(f"localize API on http://{host}:{port}  (docs: /docs; admin key in {key_source})", flush=True)
    worker = None
    if with_worker:
        # Training gets one of the cores; the API keeps the rest for requests.
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("LOCALIZE_WORKER_THREADS", "1")}
        worker = subprocess.Popen([sys.executable, "-m", "localize.cli", "worker"], env=env)
    try:
        uvicorn.run("localize.api.app:create_app", factory=True, host=host, port=port, log_level="info")
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGINT)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()


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
