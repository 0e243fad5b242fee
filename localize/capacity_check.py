"""The capacity model checked against a measured workload: what ``capacity.Figures`` predict for the workload
``localize bench --only simulate`` ran, beside what it measured (``localize capacity --check``).

Predictions use only the figures (measured by other benchmarks) and the workload's shape (users, Zipf exponent,
replicas, resident adapters per replica, the rows drawn and their mix); nothing measured during the simulated
workload itself:

- **miss ratio**: each replica is an LRU of ``replica_adapters`` owners, and rendezvous routing splits the users at
  random, so the cluster behaves like one LRU of ``replicas x replica_adapters`` (Che's approximation): a user's
  first draw always misses; once the cache is full a later draw of user *i* misses with probability
  ``exp(-p_i T)``, where the characteristic time ``T`` solves ``sum_i (1 - exp(-p_i T)) = cache``. The cache
  starts empty, as in the simulation: until it fills (the draw count at which the expected distinct users reach
  its size) only first draws miss;
- **memory per replica**: ``replica_base_bytes`` + the passes' working set + resident owners x
  ``resident_adapter_bytes``, with resident owners the smaller of the cache and the distinct users a replica sees
  (``sum_i 1 - (1 - p_i)^draws``, split). The working set grows with the rows a pass holds: ``ray_fanout``
  measures a replica after passes of about one text (``replica_base_bytes``) and after passes of
  ``loaded_rows_per_pass`` rows (``replica_loaded_base_bytes``), and the workload's rows per pass (a property of
  how its requests arrived, as below) places it on the line between the two, capped at the larger;
- **rows per CPU-second per replica**: the rows over the replica CPU time they take: ``serve_pass_ms`` per
  forward pass (the passes: the rows over the rows per pass the replicas formed, a property of how the requests
  arrived), ``serve_row_ms`` per row of single requests and mixed batches, ``fanout_row_ms`` per fan-out row,
  and ``adapter_load_ms`` per predicted miss; the measurement divides the rows by the replicas' CPU seconds in
  forward passes and loads, so it depends neither on how hard the clients pushed nor on how much CPU other
  processes left the replicas.
  Rows/s per replica of wall time is that rate times the CPU share the replicas got (measured): on a machine of
  its own a replica's share is its cores while it is saturated.
"""
from __future__ import annotations

import math
from typing import Any

from localize.capacity import Figures


def zipf_probabilities(users: int, exponent: float):  # noqa: ANN201  (a numpy array)
    import numpy as np

    weights = np.arange(1, users + 1, dtype=np.float64) ** -exponent
    return weights / weights.sum()


def expected_distinct(probabilities, draws: float) -> float:  # noqa: ANN001
    """Distinct items among ``draws`` independent draws."""
    import numpy as np

    return float((-np.expm1(draws * np.log1p(-probabilities))).sum())


def lru_misses(probabilities, cache: int, draws: float) -> float:  # noqa: ANN001
    """Expected misses of an LRU of ``cache`` entries, empty at first, over ``draws`` independent draws."""
    import numpy as np

    p = probabilities
    if draws <= 0:
        return 0.0
    distinct = expected_distinct(p, draws)
    if distinct <= cache:
        return distinct  # the cache never fills: only first draws miss
    low, high = 0.0, 1.0
    while float((-np.expm1(-p * high)).sum()) < cache:
        high *= 2
    for _ in range(100):  # bisection for the characteristic time
        mid = (low + high) / 2
        if float((-np.expm1(-p * mid)).sum()) < cache:
            low = mid
        else:
            high = mid
    characteristic = (low + high) / 2
    # Draws until the cache fills only miss on first sight: find that point, then steady state for the rest.
    fill_low, fill_high = 0.0, float(draws)
    for _ in range(60):
        mid = (fill_low + fill_high) / 2
        if expected_distinct(p, mid) < cache:
            fill_low = mid
        else:
            fill_high = mid
    filled = fill_high
    stay = np.exp(-p * characteristic)  # a repeat draw's miss probability in steady state (Che)
    unseen_at_fill = np.exp(filled * np.log1p(-p)) - np.exp(draws * np.log1p(-p))  # first sight after the fill
    # Until the fill only first sights miss (``cache`` of them); after it each draw misses with Che's probability,
    # and a first sight always misses (Che counts only ``stay`` of it).
    return cache + float(((draws - filled) * p * stay).sum()) + float((unseen_at_fill * (1 - stay)).sum())


def predict(measured: dict[str, Any], figures: Figures) -> dict[str, dict[str, float | None]]:
    """``{figure: {"predicted": ..., "measured": ..., "error": predicted / measured - 1}}`` for a simulate run."""
    users, exponent = int(measured["simulate_users"]), float(measured["simulate_zipf"])
    replicas, per_replica = int(measured["simulate_replicas"]), int(measured["simulate_replica_adapters"])
    draws = float(measured["simulate_user_draws"])
    p = zipf_probabilities(users, exponent)
    misses = lru_misses(p, replicas * per_replica, draws)
    miss_ratio = misses / draws if draws else 0.0
    resident = min(per_replica, expected_distinct(p, draws) / replicas)
    per_pass = float(measured.get("simulate_engine_rows_per_pass") or 1.0)
    memory = (figures.replica_base_bytes + working_set_bytes(figures, per_pass)
              + resident * figures.resident_adapter_bytes)
    rows = measured.get("simulate_rows") or {}
    fanout_rows, other_rows = rows.get("fanout", 0), rows.get("single", 0) + rows.get("batch", 0)
    total = fanout_rows + other_rows
    cpu_ms = (total / per_pass * figures.serve_pass_ms + other_rows * figures.serve_row_ms
              + fanout_rows * figures.fanout_row_ms + misses * figures.adapter_load_ms)
    rows_per_cpu_second = 1000.0 * total / cpu_ms if cpu_ms else None
    wall_rate = measured.get("simulate_rows_per_second_per_replica")
    cpu = measured.get("simulate_replica_cpu_share") or []
    out = {
        "miss ratio": (miss_ratio, measured.get("simulate_miss_ratio")),
        "adapter loads / s": (misses / measured["simulate_seconds"], measured.get("simulate_adapter_loads_per_second")),
        "resident adapters / replica": (resident, _mean(measured.get("simulate_resident_adapters_by_replica"))),
        "memory / replica (bytes)": (memory, measured.get("simulate_replica_rss_bytes_mean")),
        "rows / CPU-second / replica": (rows_per_cpu_second, measured.get("simulate_rows_per_cpu_second_per_replica")),
        "rows / s / replica (wall)": (rows_per_cpu_second * _mean(cpu) if cpu else None, wall_rate),
    }
    return {name: {"predicted": predicted, "measured": value,
                   "error": None if not value or predicted is None else predicted / value - 1}
            for name, (predicted, value) in out.items()}


def working_set_bytes(figures: Figures, rows_per_pass: float) -> float:
    """What passes of ``rows_per_pass`` rows leave in a replica beyond its base: linear between the two measured
    points (passes of one row: nothing; passes of ``loaded_rows_per_pass``: the loaded base's excess), capped."""
    excess = max(0.0, figures.replica_loaded_base_bytes - figures.replica_base_bytes)
    if figures.loaded_rows_per_pass <= 1:
        return excess
    return excess * min(1.0, max(0.0, (rows_per_pass - 1) / (figures.loaded_rows_per_pass - 1)))


def _mean(values) -> float | None:  # noqa: ANN001
    values = [v for v in values or [] if isinstance(v, (int, float))]
    return sum(values) / len(values) if values else None


def render(check: dict[str, dict[str, float | None]]) -> str:
    lines = ["| figure | predicted | measured | predicted / measured - 1 |", "|---|---|---|---|"]
    for name, row in check.items():
        lines.append(f"| {name} | {_show(row['predicted'])} | {_show(row['measured'])} | "
                     + ("n/a" if row["error"] is None else f"{row['error']:+.0%}") + " |")
    return "\n".join(lines)


def _show(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value >= 1e6:
        return f"{value / (1 << 20):,.0f} MiB"
    return f"{value:,.3f}" if value < 1 else f"{value:,.1f}"
