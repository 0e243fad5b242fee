"""All configuration in one place, read from the environment with the ``LOCALIZE_`` prefix."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCALIZE_", extra="ignore", env_file=None, populate_by_name=True)

    home: Path = Field(Path("var"), description="Folder for the embedded database and the local adapter store.")
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
    batch_passes: int = Field(2, ge=1, le=64, description="Merged engine passes the micro-batcher runs at once.")
    use_task_prior: bool = Field(
        False, description="Answer users without an adapter with their task's prior adapter instead of an error."
    )
    admin_key: str | None = Field(None, description="Admin API key; the server refuses to start without one.")
    default_method: str = Field("lora", description="Adapter method used when a request names none (with the "
                                "default train_scope=head: the task prior's method; users train heads on it).")
    worker_heartbeat_seconds: float = Field(2.0, gt=0, description="How often a worker records it is alive.")
    worker_dead_after_seconds: float = Field(
        30.0, gt=0, description="A running job whose worker was silent this long is requeued."
    )
    worker_poll_seconds: float = Field(0.5, gt=0, description="How often an idle worker looks for queued jobs.")
    require_no_regression: bool = Field(
        False,
        description="Activate a new adapter version only if it scores no worse than the active one on the new "
        "job's validation labels (off by default: the active version has usually trained on those very rows).",
    )

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
                                  "requeued until it has been tried this often, then failed.")
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
