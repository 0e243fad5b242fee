"""Prometheus metrics (``GET /metrics``, or a port of its own: ``LOCALIZE_METRICS_PORT``).

Two kinds of figures, told apart by where they live:

- this process's own, kept by ``prometheus_client`` as requests are served: HTTP requests and their latency,
  predictions, micro-batch rows and engine pass latency, resident adapters and their hits, misses, evictions and
  load latency. With ``PROMETHEUS_MULTIPROC_DIR`` set (several server processes), every process writes its
  figures there and a scrape adds them up.
- the training queue's, read from the database at scrape time by :class:`DatabaseCollector`: jobs by state, how
  long jobs waited in the queue, how long they trained, and the last worker heartbeat. A worker is a separate
  process (or machine), so these survive it: what it did is in the job rows it wrote.

Names follow Prometheus' guide: the ``localize_`` prefix, base units (seconds), counters end in ``_total``. Labels
have low cardinality (route template, status class, method, task, job state): never a user, a key or a text.
"""
from __future__ import annotations

import bisect
import itertools
import logging
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Buckets: a request (ms to s), an engine pass (a few ms to a 10,000-user fan-out), rows per pass, adapter loads
# (sub-ms from a local disk to seconds from object storage), queue waits and training (seconds to an hour).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
PASS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384)
LOAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
JOB_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

# This process's figures. A registry of its own (not prometheus_client's global one), so a scrape shows
# localize's figures only, however many apps a process (a test run) creates.
REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "localize_http_requests_total", "HTTP requests answered, by route template, method and status class.",
    ["route", "method", "status"], registry=REGISTRY)
HTTP_DURATION = Histogram(
    "localize_http_request_duration_seconds", "Time from a request's arrival to its last response byte.",
    ["route", "method"], buckets=REQUEST_BUCKETS, registry=REGISTRY)
PREDICTIONS = Counter(
    "localize_predictions_total", "Texts classified, by task and by whose adapter answered (user or prior).",
    ["task", "source"], registry=REGISTRY)
ENGINE_PASSES = Counter("localize_engine_passes_total", "Engine forward passes run.", registry=REGISTRY)
ENGINE_PASS_ROWS = Histogram(
    "localize_engine_pass_rows", "Rows (adapter, text) per engine pass: how many requests' texts micro-batching "
    "merged.", buckets=ROW_BUCKETS, registry=REGISTRY)
ENGINE_PASS_DURATION = Histogram(
    "localize_engine_pass_duration_seconds", "Wall time of one engine pass.", buckets=PASS_BUCKETS,
    registry=REGISTRY)
BATCHED_REQUESTS = Histogram(
    "localize_microbatch_requests", "Requests merged into one micro-batched engine pass.", buckets=ROW_BUCKETS,
    registry=REGISTRY)
ADAPTERS_RESIDENT = Gauge(
    "localize_adapters_resident", "Adapters resident in the engine (its LRU).", registry=REGISTRY,
    multiprocess_mode="livesum")
ADAPTER_HITS = Counter("localize_adapter_cache_hits_total", "Adapter lookups answered by a resident adapter.",
                       registry=REGISTRY)
ADAPTER_MISSES = Counter("localize_adapter_cache_misses_total", "Adapter lookups that had to load from the store.",
                         registry=REGISTRY)
ADAPTER_EVICTIONS = Counter("localize_adapter_evictions_total", "Resident adapters evicted to make room.",
                            registry=REGISTRY)
ADAPTER_LOAD_DURATION = Histogram(
    "localize_adapter_load_duration_seconds", "Time to load a stored adapter until it is ready to serve.",
    buckets=LOAD_BUCKETS, registry=REGISTRY)


def route_status_class(status: int) -> str:
    return f"{status // 100}xx"


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(route, method, route_status_class(status)).inc()
    HTTP_DURATION.labels(route, method).observe(seconds)


def count_predictions(by_task_and_source: dict[tuple[str, str], int]) -> None:
    for (task, source), count in by_task_and_source.items():
        PREDICTIONS.labels(task, source).inc(count)


def observe_engine_pass(rows: int, seconds: float) -> None:
    ENGINE_PASSES.inc()
    ENGINE_PASS_ROWS.observe(rows)
    ENGINE_PASS_DURATION.observe(seconds)


# -- the training queue, read from the database ------------------------------------------------------------------
class DatabaseCollector(Collector):
    """Jobs by state, queue waits, training times and the last worker heartbeat, read from the job rows at scrape
    time: whichever process (or machine) ran a job, its figures are in the database. The histograms are rebuilt
    from every started job's three timestamps at each scrape (about 0.1 s per ten thousand jobs on SQLite)."""

    def __init__(self, database) -> None:  # noqa: ANN001  (a SQLAlchemy engine)
        self.database = database

    def describe(self) -> Iterable[Metric]:
        return []  # collected lazily: nothing is queried when the collector is registered

    def collect(self) -> Iterator[Metric]:
        from sqlalchemy import func, select

        from localize.db.models import Job, JobState, WorkerHeartbeat

        try:
            with self.database.connect() as connection:
                by_state = dict(connection.execute(select(Job.state, func.count()).group_by(Job.state)).all())
                times = connection.execute(
                    select(Job.state, Job.created_at, Job.started_at, Job.finished_at)
                    .where(Job.started_at.is_not(None))).all()
                # Workers beat in their own rows while they live, idle or not; a job's row while it runs.
                beats = [connection.execute(select(func.max(WorkerHeartbeat.heartbeat_at))).scalar(),
                         connection.execute(select(func.max(Job.heartbeat_at))).scalar()]
                heartbeat = max((_timestamp(beat) for beat in beats if beat is not None), default=None)
        except Exception:  # noqa: BLE001  (a scrape during a database outage still returns the process's figures)
            logger.warning("metrics: the job figures could not be read from the database", exc_info=True)
            return
        jobs = GaugeMetricFamily("localize_jobs", "Training jobs by state.", labels=["state"])
        for state in (JobState.QUEUED, JobState.RUNNING, *JobState.FINISHED):
            jobs.add_metric([state], by_state.get(state, 0))
        yield jobs
        waits = [_seconds(started - created) for _, created, started, _ in times]
        yield _histogram("localize_job_queue_wait_seconds", "Time jobs waited in the queue before a worker "
                         "claimed them.", waits)
        trained = HistogramMetricFamily("localize_job_training_seconds", "Time from a worker's claim to the job's "
                                        "end, by final state.", labels=["state"])
        for state in JobState.FINISHED:
            seconds = [_seconds(finished - started) for job_state, _, started, finished in times
                       if job_state == state and finished is not None]
            buckets, total = _buckets(seconds)
            trained.add_metric([state], buckets, total)
        yield trained
        last = GaugeMetricFamily("localize_worker_last_heartbeat_timestamp_seconds",
                                 "When a worker last recorded it was alive (Unix time; 0: never).")
        last.add_metric([], heartbeat or 0.0)
        yield last


def _seconds(delta) -> float:  # noqa: ANN001
    return max(0.0, delta.total_seconds())


def _buckets(values: list[float]) -> tuple[list[tuple[str, float]], float]:
    counts = [0] * (len(JOB_BUCKETS) + 1)
    for value in values:
        counts[bisect.bisect_left(JOB_BUCKETS, value)] += 1  # the first bound >= value (Prometheus' le)
    cumulative = list(itertools.accumulate(counts))
    return ([(str(bound), float(count)) for bound, count in zip(JOB_BUCKETS, cumulative)]
            + [("+Inf", float(len(values)))]), float(sum(values))


def _histogram(name: str, documentation: str, values: list[float]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation)
    buckets, total = _buckets(values)
    family.add_metric([], buckets, total)
    return family


def _timestamp(moment: datetime | None) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:  # SQLite returns naive datetimes; the app stores UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


# -- exposition ---------------------------------------------------------------------------------------------------
def render(database=None) -> bytes:  # noqa: ANN001
    """The exposition text: this process's figures (every process's, in multiprocess mode), then the database's."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
        text = generate_latest(processes)
    else:
        text = generate_latest(REGISTRY)
    if database is not None:
        jobs = CollectorRegistry(auto_describe=False)
        jobs.register(DatabaseCollector(database))
        text += generate_latest(jobs)
    return text


def start_metrics_server(port: int, host: str, database=None):  # noqa: ANN001, ANN201
    """Serves :func:`render` on ``host:port`` without authentication (for a port only the scraper reaches);
    returns the server, whose ``shutdown()`` stops it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            body = render(database)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:  # noqa: A002, ANN002
            logger.debug("metrics: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="localize-metrics", daemon=True).start()
    logger.info("metrics on http://%s:%s/metrics", host, server.server_address[1])
    return server
