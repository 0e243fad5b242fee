"""The benchmark registry: each benchmark module ends with one ``register_benchmark(...)`` line.

The registration order is the run order of ``localize bench`` and the order of the goal table.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localize.bench.context import BenchContext

COMPARISONS = ("<", "<=", ">=", ">")


@dataclass(frozen=True)
class Goal:
    """A target for one figure of the results, e.g. ``Goal("cold_start_seconds", "<", 3.0)``."""

    metric: str
    comparison: str
    target: float

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"goal comparison {self.comparison!r} for {self.metric!r} is not one of {COMPARISONS}")

    def met(self, value: object) -> bool | None:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return None
        return {"<": value < self.target, "<=": value <= self.target, ">=": value >= self.target,
                ">": value > self.target}[self.comparison]


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark: ``run(context)`` writes its figures into ``context.results`` and its method into
    ``context.notes[name]``; ``goals`` are the targets the goal table checks."""

    name: str
    run: Callable[[BenchContext], None]
    summary: str
    goals: tuple[Goal, ...] = field(default_factory=tuple)


_BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    if benchmark.name in _BENCHMARKS:
        raise ValueError(f"benchmark {benchmark.name!r} is already registered")
    _BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def registered_benchmarks() -> dict[str, Benchmark]:
    """Every registered benchmark by name, in run order."""
    return dict(_BENCHMARKS)


def all_goals() -> list[Goal]:
    return [goal for benchmark in _BENCHMARKS.values() for goal in benchmark.goals]
