"""The prediction path as a Ray Serve application: ``localize serve --ray ADDRESS --replicas N``.

The FastAPI app stays where it is (auth, database look-ups, limits, the same thin routes); only the forward pass
moves. ``services.predictions`` resolves which adapter version answers each row, then, with
``LOCALIZE_SERVING=ray``, hands the rows to :class:`RayPredictor`, which sends one request per serving adapter
through a Serve handle:

- routing: the request's multiplexed model id is the adapter's owner, ``task-<id>/user-<id>`` (or
  ``task-<id>/prior``); :class:`~localize.distributed.routing.AdapterAffinityRouter` sends every request of an
  owner to the same replica (rendezvous hashing, spilling to the next one only when that replica is full), so
  an adapter is loaded on one replica, not on each replica a burst happens to reach; each replica keeps
  ``ray_replica_adapters`` of them (Serve's multiplexing LRU);
- batching: each replica holds the base model once (the process-wide ``get_base_model``) and feeds rows of
  every user that arrive within ``ray_batch_wait_ms`` into one call of the multi-user engine. ``serve.batch``
  is not used because it splits every batch by multiplexed model id, which would put one user in each pass.

A replica never touches the database: a request carries the version's store key, number and file hashes, so
a newly activated version reaches the replica with the next request (the holder reloads when the version
changes) and a corrupt file fails its hash check there, as it does in the embedded path.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from localize.distributed.cluster import connect, import_ray, portable_settings, settings_from
from localize.engine import AdapterWeights, Prediction
from localize.errors import LocalizeError, ServingUnavailableError
from localize.settings import Settings

logger = logging.getLogger(__name__)

DEPLOYMENT = "PredictionReplica"


@dataclass(frozen=True)
class AdapterRef:
    """What a replica needs to load one stored adapter version (never a path a client sent)."""

    version_id: int
    store_key: str
    version: int
    files: dict[str, str]

    @classmethod
    def from_row(cls, row: Any) -> AdapterRef:  # noqa: ANN401  (an AdapterVersion row)
        return cls(version_id=row.id, store_key=row.store_key, version=row.version, files=dict(row.files or {}))

    @property
    def model_id(self) -> str:
        """The Serve multiplexing id: the adapter's owner (task and user), the same across its versions."""
        return self.store_key


class RowBatcher:
    """Collects ``(adapter, text)`` rows of concurrent requests, of any users, into shared forward passes."""

    def __init__(self, predict: Callable[[list[tuple[AdapterWeights, str]]], list[Prediction]], *,
                 max_rows: int, wait_seconds: float) -> None:
        self.predict = predict
        self.max_rows = max_rows
        self.wait_seconds = wait_seconds
        self.passes = 0  # forward passes run, and how many requests shared them (for tests and logs)
        self.requests = 0
        self._queue: asyncio.Queue | None = None
        self._runner: asyncio.Task | None = None

    async def submit(self, rows: list[tuple[AdapterWeights, str]]) -> list[Prediction]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._runner = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((rows, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self._queue.get()]
            size = len(pending[0][0])
            deadline = loop.time() + self.wait_seconds
            while size < self.max_rows:
                remaining = deadline - loop.time()
                try:
                    item = self._queue.get_nowait() if remaining <= 0 else \
                        await asyncio.wait_for(self._queue.get(), remaining)
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                pending.append(item)
                size += len(item[0])
            rows = [row for request_rows, _ in pending for row in request_rows]
            try:
                # In a thread: the event loop keeps taking requests (the next batch) during the forward pass.
                outputs = await asyncio.to_thread(self.predict, rows)
            except Exception as error:  # noqa: BLE001  (every waiting request gets the error)
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.passes += 1
            self.requests += len(pending)
            start = 0
            for request_rows, future in pending:
                if not future.done():
                    future.set_result(outputs[start : start + len(request_rows)])
                start += len(request_rows)


class UserAdapter:
    """One owner's resident adapter inside a replica; reloads when the request names another version."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.weights: AdapterWeights | None = None
        self.version_id: int | None = None
        self._lock = asyncio.Lock()

    async def for_version(self, ref: AdapterRef, load: Callable[[AdapterRef], AdapterWeights]) -> AdapterWeights:
        async with self._lock:
            if self.version_id != ref.version_id:
                self.weights = await asyncio.to_thread(load, ref)
                self.version_id = ref.version_id
            return self.weights


def build_deployment(settings: Settings):  # noqa: ANN201
    """The Serve deployment class, sized from ``settings`` (the multiplexing LRU size is fixed at definition)."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    router = RequestRouterConfig(request_router_class="localize.distributed.routing.AdapterAffinityRouter")

    @serve.deployment(name=DEPLOYMENT, request_router_config=router)
    class PredictionReplica:
        def __init__(self, settings_values: dict[str, Any]) -> None:
            from localize.runtime import Runtime

            self.runtime = Runtime(settings_from(settings_values))
            self.engine = self.runtime.engine  # the base model, once per replica process
            self.batcher = RowBatcher(self.engine.predict, max_rows=self.runtime.settings.ray_batch_rows,
                                      wait_seconds=self.runtime.settings.ray_batch_wait_ms / 1000)
            self.replica = f"{serve.get_replica_context().replica_id.unique_id}@{socket.gethostname()}:{os.getpid()}"
            self._load_lock = threading.Lock()
            self.loads, self.load_seconds = 0, 0.0

        @serve.multiplexed(max_num_models_per_replica=settings.ray_replica_adapters)
        async def user_adapter(self, model_id: str) -> UserAdapter:
            return UserAdapter(model_id)

        def _load(self, ref: AdapterRef) -> AdapterWeights:
            begun = time.perf_counter()
            weights = self.runtime.store.load(ref.store_key, ref.version, expected_hashes=ref.files)
            reference = weights.meta.get("encoder")
            if reference:  # the task prior this head reads: resident once per replica, shared by its users
                from localize.services.adapters import load_stored

                weights.encoder = load_stored(runtime=self.runtime, store_key=reference["store_key"],
                                              version=reference["version"], files=reference.get("files"))
            weights.check_compatible(self.engine.base)
            device = self.engine.base.device
            weights.params = {name: t.to(device) for name, t in weights.params.items()}
            weights.head = {name: t.to(device) for name, t in weights.head.items()}
            with self._load_lock:
                self.loads += 1
                self.load_seconds += time.perf_counter() - begun
            return weights

        async def predict(self, ref: AdapterRef, texts: list[str]) -> dict[str, Any]:
            """Rows of one adapter; they share forward passes with every other request arriving meanwhile."""
            model_id = serve.get_multiplexed_model_id()
            if model_id != ref.model_id:
                raise ValueError(f"request for adapter {ref.model_id!r} was routed with model id {model_id!r}")
            holder = await self.user_adapter(model_id)
            weights = await holder.for_version(ref, self._load)
            outputs = await self.batcher.submit([(weights, text) for text in texts])
            return {"replica": self.replica,
                    "rows": [{"label": p.label, "probabilities": p.probabilities} for p in outputs]}

        async def stats(self) -> dict[str, Any]:
            """Counters for benchmarks and operators: passes, requests, adapter loads, process memory."""
            import psutil

            return {"replica": self.replica, "forward_passes": self.batcher.passes,
                    "requests": self.batcher.requests, "adapter_loads": self.loads,
                    "adapter_load_seconds": self.load_seconds, "rss_bytes": psutil.Process().memory_info().rss,
                    "base_model": self.engine.base.dims.model_id}

    return PredictionReplica


def deploy(settings: Settings, *, address: str | None = None, replicas: int | None = None) -> Any:  # noqa: ANN401
    """Deploys (or updates) the prediction application on the cluster and waits until its replicas are ready;
    returns its handle."""
    ray = connect(address or settings.ray_address)
    from ray import serve

    replicas = replicas or settings.ray_serve_replicas
    gpus = settings.ray_replica_gpus
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    values = portable_settings(settings)
    if gpus == 0 and values.get("device") == "auto":
        values["device"] = "cpu"
    # The API process calls replicas through handles; Serve's own HTTP proxy is not needed.
    serve.start(proxy_location="Disabled")
    deployment = build_deployment(settings).options(
        num_replicas=replicas, ray_actor_options={"num_cpus": settings.ray_replica_cpus, "num_gpus": gpus},
        max_ongoing_requests=max(64, settings.ray_batch_rows),
    )
    handle = serve.run(deployment.bind(values), name=settings.ray_serve_app, route_prefix=None, blocking=False)
    logger.info("Ray Serve application %r: %s replica(s)", settings.ray_serve_app, replicas)
    return handle


class RayPredictor:
    """The API side: one handle call per serving adapter, all in flight at once, answers in row order."""

    def __init__(self, settings: Settings, handle: Any = None) -> None:  # noqa: ANN401
        self.settings = settings
        self._handle = handle
        self._lock = threading.Lock()

    @property
    def handle(self) -> Any:  # noqa: ANN401
        with self._lock:
            if self._handle is None:
                connect(self.settings.ray_address)
                from ray import serve

                try:
                    self._handle = serve.get_app_handle(self.settings.ray_serve_app)
                except Exception as error:  # noqa: BLE001  (Serve raises several kinds when the app is absent)
                    raise ServingUnavailableError(
                        f"Ray Serve application {self.settings.ray_serve_app!r} is not running on the cluster at "
                        f"{self.settings.ray_address!r} ({error}); start it with `localize serve --ray ADDRESS`"
                    ) from None
            return self._handle

    def predict(self, rows: Sequence[tuple[AdapterRef, str]]) -> list[Prediction]:
        return [Prediction(out["label"], out["probabilities"], ref.version)
                for (ref, _), out in zip(rows, self.predict_raw(rows)["rows"])]

    def predict_raw(self, rows: Sequence[tuple[AdapterRef, str]]) -> dict[str, Any]:
        """Row outputs in order, plus which replica answered each adapter (``replicas``: model id -> replica)."""
        import_ray()
        from ray.exceptions import RayTaskError

        groups: dict[int, list[int]] = {}
        refs: dict[int, AdapterRef] = {}
        for index, (ref, _) in enumerate(rows):
            groups.setdefault(ref.version_id, []).append(index)
            refs[ref.version_id] = ref
        handle = self.handle
        calls = {
            version_id: handle.options(multiplexed_model_id=refs[version_id].model_id).predict.remote(
                refs[version_id], [rows[i][1] for i in indexes])
            for version_id, indexes in groups.items()
        }
        outputs: list[dict[str, Any] | None] = [None] * len(rows)
        replicas: dict[str, str] = {}
        for version_id, call in calls.items():
            try:
                answer = call.result(timeout_s=self.settings.ray_request_timeout_seconds)
            except RayTaskError as error:
                cause = getattr(error, "cause", None)
                if isinstance(cause, LocalizeError):
                    raise cause from None
                raise ServingUnavailableError(f"prediction replica failed: {_last_line(error)}") from None
            except LocalizeError:
                raise
            except Exception as error:  # noqa: BLE001  (timeouts, replicas lost, the cluster unreachable)
                raise ServingUnavailableError(f"prediction replicas did not answer: {type(error).__name__}: "
                                              f"{_last_line(error)}") from None
            replicas[refs[version_id].model_id] = answer["replica"]
            for index, out in zip(groups[version_id], answer["rows"]):
                outputs[index] = out
        return {"rows": outputs, "replicas": replicas}


def _last_line(error: Exception) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
