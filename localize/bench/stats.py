"""Small arithmetic shared by the benchmarks: rates, ratios, percentiles and rounding of measured times."""
from __future__ import annotations

import statistics
from typing import Any


def rate(items: int, times: list[float]) -> float:
    """Items per second at the median time."""
    return round(items / statistics.median(times), 2)


def ratio(value: float | None, baseline: float | None) -> float | None:
    return None if not value or not baseline else round(value / baseline, 3)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated ``q``-th percentile (0-100) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def round_value(value: Any, digits: int = 4) -> Any:
    return round(value, digits) if isinstance(value, float) else value


def rounded(times: list[float]) -> list[float]:
    return [round(t, 4) for t in times]


def round_dict(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round_value(v) for k, v in values.items()}
