"""How much work each benchmark does: the full sizes and the ``--quick`` ones."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class BenchSizes:
    """How much work each benchmark does; ``for_mode`` gives the full and ``--quick`` sizes."""

    batch: int = 128  # texts per batch, one user per row in the mixed batch
    registered_users: int = 1000  # adapters resident in the engine for the mixed batch
    repeats: int = 5  # timed repetitions per measurement (the median is reported)
    warmup: int = 1  # untimed runs before each measurement
    swap_users: int = 128  # single-row requests in the swap benchmark
    peft_adapters: int = 128  # distinct LoRA adapters loaded into the PEFT model
    fanout_users: int = 10_000
    fanout_distinct: int = 50  # distinct parameter sets shared by the fan-out users (each user its own object)
    fanout_repeats: int = 3
    train_texts: int = 500
    train_repeats: int = 3
    prior_precision_texts: int = 400  # demo labels per trader of the prior_precision benchmark's prior
    naive_peft: bool = True  # the naive PEFT LoRA training baseline (~20 s)
    naive_epochs: int = 3
    load_adapters: int = 50
    cold_start_repeats: int = 3
    distinct_user_counts: tuple[int, ...] = (1, 8, 32, 128)  # users per batch of the throughput curve
    fanout_scaling: tuple[int, ...] = (100, 1000, 10_000)  # users of the fan-out scaling table
    fanout_head_sizes: tuple[int, ...] = (0, 32)  # smaller heads measured beside the default
    fanout_burst: int = 8  # texts fanned out at once in the burst figure
    train_scaling: tuple[int, ...] = (100, 250, 500, 1000)  # labels per user of the training scaling table
    int8_test_texts: int = 400
    http_clients: int = 32
    http_requests_per_client: int = 20
    http_windows_ms: tuple[float, ...] = (0.0, 2.0, 10.0)
    load_clients: int = 32  # concurrent clients of the load check, each its own user
    load_seconds: float = 60.0
    load_upload_share: float = 0.4  # share of the load check's requests that upload labels (the rest predict)
    load_upload_rows: int = 5  # rows per upload
    load_seed_labels: int = 200  # labels of the user whose adapter trains during the load check
    load_job_timeout: float = 300.0  # seconds a training job may take after the load ends
    startup_repeats: int = 5
    http_seconds: float = 10.0  # measured seconds of http_speed's closed-loop load
    http_open_seconds: float = 30.0  # and of its open-loop load: its p99 is the 1% slowest of about 2,000 requests
    http_warmup_seconds: float = 3.0  # closed-loop load before http_speed measures
    ray_cpus: float = 2.0  # CPUs of the local Ray cluster the Ray benchmarks start (an existing one is reused)
    ray_replicas: int = 2  # prediction replicas of the Ray benchmarks
    ray_replica_cpus: float = 1.0  # CPUs each of them asks for
    ray_fanout_users: int = 10_000  # users of the fan-out through Ray (and embedded, the baseline)
    ray_fanout_per_user_calls: int = 1000  # users of the one-Serve-call-per-user fan-out, measured beside it
    ray_rows: int = 1024  # single-row requests (distinct resident users) of the per-replica rows/s figure
    ray_rows_few_in_flight: int = 16  # requests in flight when the same is measured with small passes
    simulate_users: int = 100_000  # generated default-recipe users (stored adapters) of the simulated workload
    simulate_replica_adapters: int = 2000  # resident adapters per replica (LOCALIZE_RAY_REPLICA_ADAPTERS)
    simulate_zipf: float = 1.1  # exponent of the users' Zipf distribution
    simulate_seconds: float = 60.0  # the workload's length ...
    simulate_requests: int = 20_000  # ... or its number of requests, whichever ends first
    simulate_clients: int = 8  # concurrent loopback clients
    simulate_mix_single: float = 0.6  # shares of the request kinds: one text for one user,
    simulate_mix_batch: float = 0.25  # a mixed batch,
    simulate_mix_fanout: float = 0.05  # a fan-out,
    simulate_mix_labels: float = 0.1  # labels, then a retrain request
    simulate_batch_rows: int = 16  # rows of a mixed batch, each a drawn user
    simulate_fanout_users: int = 64  # users drawn for a fan-out
    simulate_label_rows: int = 20  # labels per upload (each upload is followed by a retrain request)

    def __post_init__(self) -> None:
        if self.batch < 1 or self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"batch={self.batch} and repeats={self.repeats} must be >= 1, warmup={self.warmup} >= 0")
        if self.registered_users < self.batch:
            raise ValueError(f"registered_users={self.registered_users} must be >= batch={self.batch}: "
                             "every row of a mixed batch belongs to a different user")
        if self.load_clients < 1 or self.load_seconds <= 0 or self.load_upload_rows < 2:
            raise ValueError(f"load_clients={self.load_clients} must be >= 1, load_seconds={self.load_seconds} > 0 "
                             f"and load_upload_rows={self.load_upload_rows} >= 2")
        if not 0 <= self.load_upload_share <= 1:
            raise ValueError(f"load_upload_share={self.load_upload_share} must be between 0 and 1")

    @classmethod
    def for_mode(cls, quick: bool) -> BenchSizes:
        if not quick:
            return cls()
        return cls(repeats=3, peft_adapters=16, fanout_users=1000, fanout_repeats=3, train_repeats=1,
                   prior_precision_texts=40,
                   naive_peft=False, cold_start_repeats=1, fanout_scaling=(100, 1000), train_scaling=(100, 500),
                   int8_test_texts=200, http_requests_per_client=5, http_windows_ms=(0.0, 2.0),
                   http_seconds=4.0, http_open_seconds=4.0, http_warmup_seconds=1.0, load_seconds=15.0,
                   startup_repeats=3,
                   ray_fanout_users=1000, ray_fanout_per_user_calls=200, ray_rows=256, simulate_users=2000,
                   simulate_replica_adapters=200, simulate_seconds=20.0, simulate_requests=2000)

    def with_overrides(self, assignments: list[str]) -> BenchSizes:
        """A copy with ``name=value`` assignments applied (``--size load_seconds=30``), each value parsed as the
        field's type (tuples: comma-separated)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for assignment in assignments:
            name, sep, raw = assignment.partition("=")
            name = name.strip()
            if not sep or name not in fields:
                raise ValueError(f"--size {assignment!r}: expected NAME=VALUE with NAME one of {sorted(fields)}")
            current = getattr(self, name)
            try:
                if isinstance(current, bool):
                    if raw.strip().lower() not in ("true", "false", "1", "0"):
                        raise ValueError(f"{raw!r} is not true or false")
                    changes[name] = raw.strip().lower() in ("true", "1")
                elif isinstance(current, tuple):
                    kind = type(current[0]) if current else float
                    changes[name] = tuple(kind(part) for part in raw.split(",") if part.strip())
                else:
                    changes[name] = type(current)(raw)
            except ValueError as error:
                raise ValueError(f"--size {assignment!r}: {name} takes a {type(current).__name__}: {error}") from None
        return dataclasses.replace(self, **changes)
