"""The prediction path as a Ray Serve application: ``localize serve --ray ADDRESS --replicas N``.

The FastAPI app stays where it is (auth, database look-ups, limits, the same thin routes); only the forward pass
moves. ``services.predictions`` resolves which adapter version answers each row, then, with
``LOCALIZE_SERVING=ray``, hands the rows to :class:`~localize.distributed.predictor.RayPredictor`, which sends one
request per serving adapter through a Serve handle:

- routing: the request's multiplexed model id is the adapter's owner, ``task-<id>/user-<id>`` (or
  ``task-<id>/prior``); :class:`~localize.distributed.routing.AdapterAffinityRouter` sends every request of an
  owner to the same replica (rendezvous hashing, spilling to the next one only when that replica is full), so
  an adapter is loaded on one replica, not on each replica a burst happens to reach; each replica keeps
  ``ray_replica_adapters`` of them (:class:`AdapterCache`, an LRU);
- many owners at once (a fan-out, a mixed batch): ``RayPredictor`` splits the owners by the replica ranked
  first for each and sends each replica one request with all of its owners' rows (``predict_many``), not one
  request per owner;
- batching: each replica holds the base model once (the process-wide ``get_base_model``) and feeds rows of
  every user that arrive within ``ray_batch_wait_ms`` into one call of the multi-user engine. ``serve.batch``
  is not used because it splits every batch by multiplexed model id, which would put one user in each pass.

A replica never touches the database: a request carries the version's store key, number and file hashes, so
a newly activated version reaches the replica with the next request (the holder reloads when the version
changes) and a corrupt file fails its hash check there, as it does in the embedded path.

This module is the replica's side, a process entry point above the services (it builds a ``Runtime`` and loads
adapters through ``services.adapters``). The API's side, ``RayPredictor``, lives in ``predictor`` below them, so
the runtime can hold one without importing this module.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from localize.distributed.cluster import connect, portable_settings, settings_from
from localize.distributed.predictor import DEPLOYMENT, AdapterRef, RayPredictor
from localize.engine import AdapterWeights, Prediction
from localize.runtime import Runtime
from localize.services.adapters import load_stored
from localize.settings import Settings

logger = logging.getLogger(__name__)


class RowBatcher:
    """Collects ``(adapter, text)`` rows of concurrent requests, of any users, into shared forward passes."""

    def __init__(self, predict: Callable[[list[tuple[AdapterWeights, str]]], list[Prediction]], *,
                 max_rows: int, wait_seconds: float) -> None:
        self.predict = predict
        self.max_rows = max_rows
        self.wait_seconds = wait_seconds
        self.passes = 0  # forward passes run, and how many requests and rows shared them (for tests and logs)
        self.requests = 0
        self.rows = 0
        self.busy_seconds = 0.0  # time inside forward passes: wall, and CPU of the thread that ran them
        self.cpu_seconds = 0.0
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
                begun = time.perf_counter()
                outputs, cpu = await asyncio.to_thread(self._timed, rows)
                self.busy_seconds += time.perf_counter() - begun
                self.cpu_seconds += cpu
            except Exception as error:  # noqa: BLE001  (every waiting request gets the error)
                for _, future in pending:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.passes += 1
            self.requests += len(pending)
            self.rows += len(rows)
            start = 0
            for request_rows, future in pending:
                if not future.done():
                    future.set_result(outputs[start : start + len(request_rows)])
                start += len(request_rows)


    def _timed(self, rows: list[tuple[AdapterWeights, str]]) -> tuple[list[Prediction], float]:
        # CPU time of this thread: on a shared machine it says what a pass costs, wall time what it waited too.
        begun = time.thread_time()
        outputs = self.predict(rows)
        return outputs, time.thread_time() - begun


class UserAdapter:
    """One owner's resident adapter inside a replica; reloads when the request names another version."""

    __slots__ = ("model_id", "weights", "version_id", "_lock")

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


class AdapterCache:
    """A replica's resident adapters by owner (model id), least recently used out first.

    Serve's ``@serve.multiplexed`` would do this for one owner per request, but it cannot serve a request with
    many owners, and every 0.1 s it sets a metrics gauge per resident owner (work that grows with the cache)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be >= 1")
        self.capacity = capacity
        self.lookups = 0  # holders asked for, and how many were not resident (for stats: the miss ratio)
        self.misses = 0
        self.evictions = 0
        self._holders: OrderedDict[str, UserAdapter] = OrderedDict()

    def __len__(self) -> int:
        return len(self._holders)

    def holder(self, model_id: str) -> UserAdapter:
        self.lookups += 1
        holder = self._holders.get(model_id)
        if holder is not None:
            self._holders.move_to_end(model_id)
            return holder
        self.misses += 1
        while len(self._holders) >= self.capacity:
            self._holders.popitem(last=False)  # a request still holding its weights keeps them until it answers
            self.evictions += 1
        holder = self._holders[model_id] = UserAdapter(model_id)
        return holder


def build_deployment(settings: Settings):  # noqa: ANN201
    """The Serve deployment class (its replicas size themselves from the settings values they are bound to)."""
    from ray import serve
    from ray.serve.config import RequestRouterConfig

    router = RequestRouterConfig(request_router_class="localize.distributed.routing.AdapterAffinityRouter")

    @serve.deployment(name=DEPLOYMENT, request_router_config=router)
    class PredictionReplica:
        def __init__(self, settings_values: dict[str, Any]) -> None:
            self.runtime = Runtime(settings_from(settings_values))
            self.engine = self.runtime.engine  # the base model, once per replica process
            self.batcher = RowBatcher(self.engine.predict, max_rows=self.runtime.settings.ray_batch_rows,
                                      wait_seconds=self.runtime.settings.ray_batch_wait_ms / 1000)
            self.replica = f"{serve.get_replica_context().replica_id.unique_id}@{socket.gethostname()}:{os.getpid()}"
            self._load_lock = threading.Lock()
            self.loads, self.load_seconds, self.load_cpu_seconds = 0, 0.0, 0.0
            self.adapters = AdapterCache(self.runtime.settings.ray_replica_adapters)

        def _load(self, ref: AdapterRef) -> AdapterWeights:
            begun, cpu = time.perf_counter(), time.thread_time()
            weights = self.runtime.store.load(ref.store_key, ref.version, expected_hashes=ref.files)
            reference = weights.meta.get("encoder")
            if reference:  # the task prior this head reads: resident once per replica, shared by its users
                weights.encoder = load_stored(runtime=self.runtime, store_key=reference["store_key"],
                                              version=reference["version"], files=reference.get("files"))
            weights.check_compatible(self.engine.base)
            device = self.engine.base.device
            weights.params = {name: t.to(device) for name, t in weights.params.items()}
            weights.head = {name: t.to(device) for name, t in weights.head.items()}
            with self._load_lock:
                self.loads += 1
                self.load_seconds += time.perf_counter() - begun
                self.load_cpu_seconds += time.thread_time() - cpu
            return weights

        async def predict(self, ref: AdapterRef, texts: list[str]) -> dict[str, Any]:
            """Rows of one adapter; they share forward passes with every other request arriving meanwhile."""
            model_id = serve.get_multiplexed_model_id()
            if model_id != ref.model_id:
                raise ValueError(f"request for adapter {ref.model_id!r} was routed with model id {model_id!r}")
            weights = await self.adapters.holder(model_id).for_version(ref, self._load)
            outputs = await self.batcher.submit([(weights, text) for text in texts])
            return {"replica": self.replica, "rows": _rows(outputs)}

        async def predict_many(self, refs: list[AdapterRef], texts: list[list[str]]) -> dict[str, Any]:
            """Rows of many adapters (``texts[i]`` for ``refs[i]``) in one request: the owners the API found
            ranked first on this replica. Adapters not resident (or of another version) load in one thread."""
            holders = [self.adapters.holder(ref.model_id) for ref in refs]
            # Taken with no await in between, so a concurrent request cannot swap a holder's version meanwhile.
            weights = [h.weights if h.version_id == ref.version_id else None for h, ref in zip(holders, refs)]
            stale = [i for i, w in enumerate(weights) if w is None]
            if stale:
                loaded = await asyncio.to_thread(lambda: [self._load(refs[i]) for i in stale])
                for i, w in zip(stale, loaded):
                    weights[i] = holders[i].weights = w
                    holders[i].version_id = refs[i].version_id
            outputs = await self.batcher.submit([(w, text) for w, group in zip(weights, texts) for text in group])
            return {"replica": self.replica, "rows": _rows(outputs)}

        async def stats(self) -> dict[str, Any]:
            """Counters for benchmarks and operators: passes, requests, adapter loads, process memory."""
            import psutil

            return {"replica": self.replica, "forward_passes": self.batcher.passes,
                    "requests": self.batcher.requests, "rows": self.batcher.rows,
                    "pass_seconds": self.batcher.busy_seconds, "pass_cpu_seconds": self.batcher.cpu_seconds,
                    "adapter_loads": self.loads, "adapter_load_seconds": self.load_seconds,
                    "adapter_load_cpu_seconds": self.load_cpu_seconds, "adapter_lookups": self.adapters.lookups,
                    "adapter_misses": self.adapters.misses, "adapters_resident": len(self.adapters),
                    "adapter_evictions": self.adapters.evictions,
                    "rss_bytes": psutil.Process().memory_info().rss, "base_model": self.engine.base.dims.model_id}

    return PredictionReplica


def _rows(outputs: list[Prediction]) -> list[dict[str, Any]]:
    return [{"label": p.label, "probabilities": p.probabilities} for p in outputs]


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


__all__ = ["AdapterCache", "AdapterRef", "RayPredictor", "RowBatcher", "UserAdapter", "build_deployment", "deploy"]
