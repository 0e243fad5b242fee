"""``localize capacity``: how many prediction replicas and training workers a user base needs, from measured figures.

Inputs are figures measured on one machine (``Figures``: read from the JSON of the latest ``localize bench`` runs,
which every run keeps in the workspace's ``bench/`` folder, or given with ``--figures`` (``localize bench --out``,
``scripts/bench_ray.py --out``); constants measured on the development machine when there are none) and a
workload (``Workload``: users, the share
active in a day, the peak prediction rate, how often adapters are retrained). Each resource gives the replicas it
alone would need; the largest is the binding one, the *first bottleneck*:

- compute: peak rows per second over what one replica predicts per second, at ``target_utilization``;
- memory: the active users' adapters (``resident_share`` of them; all by default) resident once each, in what a
  replica has left beside the base model (a user is routed to one replica, so adapters are not duplicated);
- adapter loads: a request whose adapter is not resident loads it first (``adapter_load_ms`` of replica time);
  the cluster holds ``replicas x adapters_per_replica`` adapters, and a request misses with probability
  ``1 - resident / active users`` (uniform use of the active set); replicas are added until rows plus loads fit.

Training workers: adapters retrained per day times seconds per adapter, over a day of worker time at
``target_utilization`` (or over ``retrain_window_hours`` when retraining is batched into a nightly window).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

GIB = 1 << 30


@dataclass(frozen=True)
class Figures:
    """Measured per-unit costs. Defaults: ``localize bench --only ray_fanout,simulate`` and ``--quick --only
    train`` on the 2-core development machine while other processes kept it busy (docs/deploy.md gives the
    commands and the load; CPU-time figures hold up under load, wall rates do not); re-measure on your hardware."""

    predictions_per_second_per_replica: float = field(default=56.8, metadata={
        "help": "Rows per second one prediction replica answers on its own cores, rows of different users batched "
                "together.",
        "keys": ("serve_rows_per_cpu_second_per_replica", "serve_rows_per_second_per_replica",
                 "mixed_batch_texts_per_second")})
    replica_cpus: float = field(default=1.0, metadata={
        "help": "CPU cores the replica used while measuring predictions_per_second_per_replica.",
        "keys": ("serve_replica_cpus",)})
    resident_adapter_bytes: float = field(default=34_558.0, metadata={
        "help": "Memory one resident adapter takes in a replica (tensors plus bookkeeping).",
        "keys": ("serve_resident_adapter_bytes", "resident_adapter_bytes")})
    replica_base_bytes: float = field(default=549_426_972.0, metadata={
        "help": "Memory of a replica process with the base model loaded and no adapter.",
        "keys": ("serve_replica_base_bytes",)})
    replica_loaded_base_bytes: float = field(default=1_433_926_072.0, metadata={
        "help": "Memory of a replica, adapters aside, after serving passes of loaded_rows_per_pass rows: the base "
                "model plus the working set those passes left (activations, memory the allocator keeps).",
        "keys": ("serve_replica_loaded_base_bytes",)})
    loaded_rows_per_pass: float = field(default=50.27, metadata={
        "help": "Rows per forward pass of the passes behind replica_loaded_base_bytes.",
        "keys": ("serve_rows_per_forward_pass",)})
    adapter_load_ms: float = field(default=0.422, metadata={
        "help": "Replica time to load one stored adapter (read, hash check, parse).",
        "keys": ("serve_adapter_load_ms", "adapter_load_ms_p50")})
    train_seconds_per_adapter: float = field(default=5.17, metadata={
        "help": "Seconds one training worker (one task slot) spends on one adapter of ~500 labels.",
        "keys": ("ray_train_seconds_per_adapter", "train_500_seconds")})
    stored_adapter_bytes: float = field(default=5_811.0, metadata={
        "help": "Bytes of one adapter version in the store (all files).",
        "keys": ("stored_adapter_bytes",)})
    serve_row_ms: float = field(default=16.901, metadata={
        "help": "Replica CPU time per row of single requests and mixed batches, besides the pass's own.",
        "keys": ("serve_row_ms",)})
    serve_pass_ms: float = field(default=33.836, metadata={
        "help": "Replica CPU time per forward pass besides its rows' (a pass of r rows: pass + r x row).",
        "keys": ("serve_pass_ms",)})
    fanout_row_ms: float = field(default=0.0581, metadata={
        "help": "Replica CPU time per row of a fan-out (one text, many users: the text is encoded once).",
        "keys": ("serve_fanout_row_ms",)})

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"figure {item.name}={value!r} must be a positive number")

    @classmethod
    def from_measurements(cls, *documents: dict[str, Any], base: Figures | None = None) -> Figures:
        """Figures from bench JSON documents: for each figure the first key found (later documents win)."""
        values = asdict(base or cls())
        for document in documents:
            for item in fields(cls):
                for key in item.metadata["keys"]:
                    found = document.get(key)
                    if isinstance(found, (int, float)) and found > 0:
                        values[item.name] = float(found)
                        break
        return cls(**values)

    @classmethod
    def from_files(cls, paths: list[Path]) -> Figures:
        documents = []
        for path in paths:
            try:
                document = json.loads(Path(path).read_text())
            except FileNotFoundError:
                raise ValueError(f"figures file {str(path)!r} does not exist") from None
            except json.JSONDecodeError as error:
                raise ValueError(f"figures file {str(path)!r} is not JSON: {error}") from None
            if not isinstance(document, dict):
                raise ValueError(f"figures file {str(path)!r} must hold a JSON object")
            documents.append(document)
        return cls.from_measurements(*documents)


def bench_folder(home: Path) -> Path:
    """Where ``localize bench`` keeps a copy of every run's JSON, and ``localize capacity`` reads them."""
    return Path(home) / "bench"


def latest_results(home: Path) -> list[Path]:
    """The bench JSON files kept in the workspace, oldest first (so a later run's figure wins)."""
    folder = bench_folder(home)
    return sorted(folder.glob("*.json"), key=lambda path: (path.stat().st_mtime, path.name)) if folder.is_dir() else []


@dataclass(frozen=True)
class Workload:
    users: int = field(default=1_000_000, metadata={"help": "Users with an adapter."})
    active_fraction: float = field(default=0.1, metadata={"help": "Share of users who predict in a day."})
    requests_per_second: float = field(default=1_000.0, metadata={"help": "Peak prediction rows per second."})
    retrains_per_user_per_day: float = field(default=0.1, metadata={
        "help": "Adapter retrains per user per day (0.1: each user's adapter every ten days)."})
    resident_share: float = field(default=1.0, metadata={
        "help": "Share of the active users' adapters kept resident; the rest load on their request."})
    replica_memory_gib: float = field(default=8.0, metadata={"help": "Memory of one replica (process budget)."})
    target_utilization: float = field(default=0.7, metadata={"help": "Busy share planned per replica and worker."})
    retrain_window_hours: float = field(default=24.0, metadata={
        "help": "Hours of the day in which retraining runs (24: around the clock)."})

    def __post_init__(self) -> None:
        checks = [
            ("users", self.users >= 1, ">= 1"),
            ("active_fraction", 0 < self.active_fraction <= 1, "in (0, 1]"),
            ("requests_per_second", self.requests_per_second >= 0, ">= 0"),
            ("retrains_per_user_per_day", self.retrains_per_user_per_day >= 0, ">= 0"),
            ("resident_share", 0 <= self.resident_share <= 1, "in [0, 1]"),
            ("replica_memory_gib", self.replica_memory_gib > 0, "> 0"),
            ("target_utilization", 0 < self.target_utilization <= 1, "in (0, 1]"),
            ("retrain_window_hours", 0 < self.retrain_window_hours <= 24, "in (0, 24]"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name}={getattr(self, name)!r} must be {rule}")


@dataclass(frozen=True)
class Plan:
    workload: Workload
    figures: Figures
    active_users: int
    adapters_per_replica: int
    replicas_for_compute: int
    replicas_for_memory: int
    replicas: int
    bottleneck: str
    miss_ratio: float
    adapter_loads_per_second: float
    replica_utilization: float
    retrains_per_day: float
    training_workers: int
    worker_utilization: float
    store_bytes: float
    cores: float
    limits: dict[str, float]  # per resource: the peak rows/s (or active users) the planned replicas sustain

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["workload"], data["figures"] = asdict(self.workload), asdict(self.figures)
        return data


def plan(workload: Workload, figures: Figures) -> Plan:
    """Replicas and workers for ``workload``; the resource that needs the most replicas is the bottleneck."""
    active = max(1, math.ceil(workload.users * workload.active_fraction))
    free_bytes = workload.replica_memory_gib * GIB - figures.replica_base_bytes
    if free_bytes <= 0:
        raise ValueError(f"replica_memory_gib={workload.replica_memory_gib} leaves no room beside the base model "
                         f"({figures.replica_base_bytes / GIB:.2f} GiB)")
    per_replica = max(1, int(free_bytes // figures.resident_adapter_bytes))
    rate, util = workload.requests_per_second, workload.target_utilization
    capacity = figures.predictions_per_second_per_replica

    compute = max(1, math.ceil(rate / (capacity * util)))
    memory = max(1, math.ceil(active * workload.resident_share / per_replica))

    def busy(replicas: int) -> tuple[float, float]:
        """Replica-seconds of work per second, and the miss ratio, with ``replicas`` replicas."""
        miss = max(0.0, 1.0 - replicas * per_replica / active)
        return rate / capacity + rate * miss * figures.adapter_load_ms / 1000.0, miss

    # The smallest count that holds the resident share and whose rows plus adapter loads fit the target.
    replicas = max(compute, memory)
    while busy(replicas)[0] > replicas * util:
        replicas += 1
    if replicas > max(compute, memory):
        bottleneck = "adapter loads"
    elif replicas == 1:
        bottleneck = "none (one replica suffices)"
    else:
        bottleneck = "compute" if compute >= memory else "memory"
    work, miss = busy(replicas)

    retrains = workload.users * workload.retrains_per_user_per_day
    window = workload.retrain_window_hours * 3600.0
    workers = math.ceil(retrains * figures.train_seconds_per_adapter / (window * util)) if retrains else 0
    worker_busy = retrains * figures.train_seconds_per_adapter / (window * workers) if workers else 0.0
    limits = {
        "compute_rows_per_second": replicas * capacity * util,
        "resident_active_users": replicas * per_replica,
        "training_retrains_per_day": workers * window * util / figures.train_seconds_per_adapter if workers else 0.0,
    }
    return Plan(
        workload=workload, figures=figures, active_users=active, adapters_per_replica=per_replica,
        replicas_for_compute=compute, replicas_for_memory=memory,
        replicas=replicas, bottleneck=bottleneck, miss_ratio=miss, adapter_loads_per_second=rate * miss,
        replica_utilization=work / replicas, retrains_per_day=retrains, training_workers=workers,
        worker_utilization=worker_busy, store_bytes=workload.users * figures.stored_adapter_bytes,
        cores=replicas * figures.replica_cpus + workers, limits=limits,
    )


SCENARIOS: dict[str, Workload] = {
    "quiet": Workload(requests_per_second=50, active_fraction=0.05),
    "typical": Workload(requests_per_second=1_000, active_fraction=0.1),
    "busy": Workload(requests_per_second=10_000, active_fraction=0.3, retrains_per_user_per_day=1.0),
    "quiet, a quarter resident": Workload(requests_per_second=50, active_fraction=0.05, resident_share=0.25),
}


def at_scale(workload: Workload, figures: Figures, users: tuple[int, ...] = (10_000, 100_000, 1_000_000)
             ) -> dict[str, Plan]:
    """Plans for other user counts under the same workload shape: the peak rate grows with the users (the same
    rows per second per user), the active share and retrains per user stay."""
    per_user = workload.requests_per_second / workload.users
    return {f"{n:,} users": plan(replace(workload, users=n, requests_per_second=per_user * n), figures) for n in users}


def dominant(plan_: Plan) -> str:
    """Which term of the cost is largest: the cores of prediction replicas or of training workers, and within
    prediction the resource that sets the replica count."""
    prediction = plan_.replicas * plan_.figures.replica_cpus
    side = "prediction" if prediction >= plan_.training_workers else "training"
    if side == "training":
        return "training cores"
    return "prediction cores (one replica)" if plan_.replicas == 1 else f"prediction cores ({plan_.bottleneck})"


def render(plans: dict[str, Plan]) -> str:
    """A markdown table, one column per scenario (docs/deploy.md includes it)."""
    names = list(plans)
    rows = [
        ("users", lambda p: f"{p.workload.users:,}"),
        ("active users / day", lambda p: f"{p.active_users:,}"),
        ("peak rows / s", lambda p: f"{p.workload.requests_per_second:,.0f}"),
        ("retrains / day", lambda p: f"{p.retrains_per_day:,.0f}"),
        ("replica memory", lambda p: f"{p.workload.replica_memory_gib:g} GiB"),
        ("adapters per replica", lambda p: f"{p.adapters_per_replica:,}"),
        ("replicas for compute", lambda p: str(p.replicas_for_compute)),
        ("replicas for memory", lambda p: str(p.replicas_for_memory)),
        ("adapter miss ratio", lambda p: f"{p.miss_ratio:.1%}"),
        ("**prediction replicas**", lambda p: f"**{p.replicas}**"),
        ("replica utilization", lambda p: f"{p.replica_utilization:.0%}"),
        ("adapter loads / s", lambda p: f"{p.adapter_loads_per_second:,.1f}"),
        ("**training workers**", lambda p: f"**{p.training_workers}**"),
        ("cores (replicas + workers)", lambda p: f"{p.cores:,.0f}"),
        ("cores: prediction / training",
         lambda p: f"{p.replicas * p.figures.replica_cpus:,.0f} / {p.training_workers:,}"),
        ("largest term", dominant),
        ("adapter store", lambda p: f"{p.store_bytes / GIB:,.1f} GiB"),
        ("**first bottleneck**", lambda p: f"**{p.bottleneck}**"),
    ]
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cell(plans[name]) for name in names) + " |" for label, cell in rows]
    return "\n".join(lines)


def describe(figures: Figures) -> str:
    lines = ["| figure | value | meaning |", "|---|---|---|"]
    for item in fields(figures):
        value = getattr(figures, item.name)
        shown = f"{value:,.0f}" if value >= 1000 else f"{value:g}"
        lines.append(f"| `{item.name}` | {shown} | {item.metadata['help']} |")
    return "\n".join(lines)
