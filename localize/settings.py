"""All configuration in one place, read from the environment with the ``LOCALIZE_`` prefix."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    """The per-user data folder, so every command finds the same workspace wherever it runs."""
    from platformdirs import user_data_path

    return user_data_path("localize", appauthor=False)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCALIZE_", extra="ignore", env_file=None, populate_by_name=True)

    home: Path = Field(
        default_factory=default_home,
        description="Workspace: the folder of the embedded database and the local adapter store. Default: the "
        "per-user data folder (~/.local/share/localize on Linux), the same whichever folder a command runs in.")
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("LOCALIZE_DATABASE_URL", "DATABASE_URL", "database_url"),
        description="SQLAlchemy URL (LOCALIZE_DATABASE_URL, or the conventional DATABASE_URL); defaults to a SQLite "
        "file in `home`. A postgresql:// URL selects PostgreSQL.",
    )
    adapter_store: str | None = Field(
        None, description="Adapter store: a folder, or an fsspec URL (s3://bucket/prefix, memory://, file://...); "
        "defaults to `home`/adapters."
    )
    adapter_store_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec storage options for a URL adapter store, as JSON (e.g. "
        '{"client_kwargs": {"endpoint_url": "http://minio:9000"}}).'
    )
    base_model: str | None = Field(
        None, description="Local Hugging Face model directory; defaults to the bundled all-MiniLM-L6-v2."
    )
    quantization: str = Field("none", description="Base model weights: none, int8 (torch dynamic) or bnb8 / bnb4.")
    device: str = Field("auto", description="auto, cpu or cuda.")
    max_seq_length: int = Field(128, ge=8, le=512, description="Tokens per text kept; longer texts are truncated.")
    max_text_chars: int = Field(5000, ge=1, description="Longest text accepted, in characters.")
    max_batch_rows: int = Field(1000, ge=1, description="Most rows accepted in one upload or prediction request.")
    max_upload_bytes: int = Field(10_000_000, ge=1, description="Largest upload body accepted, in bytes.")
    resident_adapters: int = Field(1024, ge=1, description="Adapters kept in memory (LRU); the rest load on demand.")
    batch_window_ms: float = Field(
        2.0, ge=0, le=1000,
        description="Prediction requests arriving within this window share one engine pass (0 turns merging off).",
    )
    batch_max_rows: int = Field(128, ge=1, description="Most rows merged into one engine pass by the micro-batcher.")
    batch_passes: int | None = Field(
        None, ge=1, le=64,
        description="Merged engine passes the micro-batcher runs at once. Unset: as many as the cores hold passes "
        "of the engine's threads (two on a 2-core machine with one thread each); two on a GPU.",
    )
    engine_threads: int | None = Field(
        None, ge=1, le=1024,
        description="torch intra-op threads of the API process, set when it starts. Unset: torch's "
        "default (one per core). `localize serve` sets 1: passes side by side, one core each, answer concurrent "
        "requests sooner than one pass spread over every core.",
    )
    freeze_heap: bool = Field(
        False, description="After start-up and after the base model loads, keep every object then alive out of the "
        "garbage collector's full passes, which otherwise stall every request for a few hundred milliseconds every "
        "few seconds under load. `localize serve` turns it on; leave it off in a process that builds many apps.",
    )
    use_task_prior: bool = Field(
        False, description="Answer users without an adapter with their task's prior adapter instead of an error."
    )
    admin_key: str | None = Field(None, description="Admin API key (16 characters or more); the server refuses to "
                                  "start without one.")
    # Per-user limits: what one user key may take of a shared server. The admin key is not limited.
    max_pending_jobs_per_user: int | None = Field(
        4, ge=1, description="Most queued or running training jobs one user may have at once, over all tasks (409 "
        "beyond it). Unset: no limit.")
    max_labels_per_user: int | None = Field(
        100_000, ge=1, description="Most labels one user may store, over all tasks; an upload's new rows past it are "
        "row errors (updates of stored labels always pass). Unset: no limit.")
    rate_limit_per_second: float | None = Field(
        100.0, gt=0, description="Requests per second one user key may make on average, in bursts of up to twice "
        "as many; past it the answer is 429 with Retry-After. Per server process. Unset: no limit.")
    default_method: str = Field("prior-head", description="Recipe used when a request names none: prior-head (a "
                                "task prior, a LoRA on the top four layers, with a MAP-fitted linear head per user on "
                                "its encoding), or an adapter method trained per user (lora, ia3, prompt_tuning, ...).")
    recipe_candidates: str | None = Field(None, description="The recipes whole-task training chooses between, "
                                          "comma-separated (prior-head, pooled-head, prior-mlp, prior-mlp-averaged, "
                                          "prior3-head, prior3-mlp-averaged, prior-lora); unset: "
                                          "all of them. Fewer candidates choose faster.")
    stacked_priors_max_labels: int = Field(
        20_000, ge=0, description="Whole-task training tries the prior3- candidates (three task priors side by "
        "side) on tasks of up to this many labels. Each extra prior trains as long as the first, in the choice and "
        "again if it wins: raise it where accuracy is worth that time (MD-Agreement, 43,014 labels: three priors "
        "pinned served .811 / .746 against one prior's .804 / .739, for about three times the priors' training time).")
    worker_heartbeat_seconds: float = Field(2.0, gt=0, description="How often a worker records it is alive.")
    worker_dead_after_seconds: float = Field(
        30.0, gt=0, description="A running job whose worker was silent this long is requeued."
    )
    worker_poll_seconds: float = Field(0.5, gt=0, description="How often an idle worker looks for queued jobs.")
    worker_max_attempts: int = Field(
        3, ge=1, description="A job whose worker died during this many of its runs fails instead of being requeued."
    )
    worker_restart_seconds: float = Field(
        1.0, gt=0, description="`serve` restarts a dead worker after this long, doubling for each quick death in a "
        "row (up to 60 s)."
    )
    worker_stop_grace_seconds: float = Field(
        7.0, gt=0, description="How long a stopping worker may take to requeue its job before it is killed."
    )
    require_no_regression: bool = Field(
        False,
        description="Activate a new adapter version only if it scores no worse than the active one on the new "
        "job's validation labels (off by default: the active version has usually trained on those very rows).",
    )

    # -- observability (docs/deploy.md) -----------------------------------------------------------------------------
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Also serve Prometheus metrics without authentication on this port (for "
        "a port only the scraper reaches); unset: only `GET /metrics` with the admin key.")
    metrics_host: str = Field("127.0.0.1", description="Address the metrics port listens on.")
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP collector for OpenTelemetry traces (e.g. http://localhost:4318; OpenTelemetry's "
        "OTEL_EXPORTER_OTLP_ENDPOINT works too); unset: no tracing. Needs the `otel` extra.")

    # -- Ray (docs/deploy.md) -------------------------------------------------------------------------------------
    ray_address: str | None = Field(
        None, description="Ray cluster for training workers and Serve replicas: 'auto', 'local' (start one here), "
        "'host:6379' or 'ray://host:10001'. Unset: training and prediction run in-process.")
    ray_train_cpus: float = Field(1.0, ge=0, description="CPUs each Ray training task asks for.")
    ray_train_gpus: float | None = Field(
        None, ge=0, description="GPUs each Ray training task asks for (fractions share a GPU); unset: 1 when the "
        "cluster has GPUs, else 0.")
    ray_max_concurrent_jobs: int | None = Field(
        None, ge=1, description="Most training jobs one Ray worker runs at once; unset: as many as the cluster's "
        "CPUs (and GPUs) hold.")
    ray_max_attempts: int = Field(3, ge=1, description="A job whose Ray task crashed (process or node lost) is "
                                  "requeued until it has been tried this often, then failed; so is one whose Ray "
                                  "tasks stopped sending heartbeats this often.")
    serving: str = Field("embedded", description="Where the API's forward passes run: 'embedded' (this process) "
                         "or 'ray' (the Ray Serve application `ray_serve_app`; `localize serve --ray` sets it).")
    ray_serve_app: str = Field("localize", description="Name of the Ray Serve application of prediction replicas.")
    ray_serve_replicas: int = Field(2, ge=1, description="Prediction replicas, each holding the base model once.")
    ray_replica_cpus: float = Field(1.0, ge=0, description="CPUs each prediction replica asks for.")
    ray_replica_gpus: float | None = Field(
        None, ge=0, description="GPUs each prediction replica asks for; unset: 1 when the cluster has GPUs, else 0.")
    ray_replica_adapters: int = Field(
        1024, ge=1, description="User adapters each replica keeps resident (Serve's multiplexing LRU); a user's "
        "requests are routed to a replica that holds theirs.")
    ray_batch_rows: int = Field(128, ge=1, description="Most rows a replica puts in one forward pass.")
    ray_batch_wait_ms: float = Field(5.0, ge=0, description="How long a replica waits for more rows to batch.")
    ray_request_timeout_seconds: float = Field(30.0, gt=0, description="How long the API waits for a replica.")

    # -- webhooks -------------------------------------------------------------------------------------------------
    webhook_sender: bool = Field(True, description="Run the webhook sender in the API process (one sender per "
                                 "deployment is enough; several may run, each delivery is claimed by one).")
    webhook_poll_seconds: float = Field(1.0, gt=0, description="How often the sender looks for due deliveries.")
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="How long a receiver may take to answer.")
    webhook_max_attempts: int = Field(
        15, ge=1, description="Attempts per delivery before it is marked failed (with the default backoff the last "
        "comes about four hours after the first; a failed one can be redelivered).")
    webhook_backoff_seconds: float = Field(
        2.0, gt=0, description="Pause after a delivery's first failed attempt; it doubles after each further one "
        "(up to an hour).")

    @field_validator("serving")
    @classmethod
    def _check_serving(cls, value: str) -> str:
        if value not in ("embedded", "ray"):
            raise ValueError(f"serving {value!r} is not one of ('embedded', 'ray')")
        return value

    @field_validator("quantization")
    @classmethod
    def _check_quantization(cls, value: str) -> str:
        allowed = ("none", "int8", "bnb8", "bnb4")
        if value not in allowed:
            raise ValueError(f"quantization {value!r} is not one of {allowed}")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'localize.db').resolve()}"

    @property
    def resolved_adapter_store(self) -> str:
        return self.adapter_store or str((self.home / "adapters").resolve())


@lru_cache
def get_settings() -> Settings:
    return Settings()
