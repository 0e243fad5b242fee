"""Runs the chosen benchmarks in one process, each against baselines of the same run, and hands the results to
the table (terminal), the JSON file and the markdown report."""
from __future__ import annotations

import json
import logging
import os
import platform
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from localize.bench.context import BenchContext
from localize.bench.registry import registered_benchmarks
from localize.bench.sizes import BenchSizes
from localize.bench.table import goal_report, print_table

logger = logging.getLogger(__name__)


def run_benchmarks(
    *,
    quick: bool,
    only: list[str] | None,
    out: Path | None,
    console: Console,
    sizes: BenchSizes | None = None,
    threads: int | None = None,
    report: Path | None = None,
    as_json: bool = False,
    size_overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Runs the chosen benchmarks (all by default) and prints a readable table (``as_json``: the results as JSON
    on ``console`` instead, with progress on stderr); writes the JSON to ``out`` and, with ``report``, the markdown
    report and its plot into that folder. ``size_overrides``: ``name=value`` changes to the sizes."""
    benchmarks = registered_benchmarks()
    chosen = list(benchmarks) if not only else list(dict.fromkeys(only))
    unknown = [name for name in chosen if name not in benchmarks]
    if unknown:
        raise ValueError(f"benchmark(s) {unknown} are not among {list(benchmarks)}")
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads={threads} must be >= 1")
        # Every process of the run (children too) uses this many intra-op threads: on a CPU shared with other
        # busy processes, fewer threads than cores avoids threads waiting on each other at every operation.
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sizes = (sizes or BenchSizes.for_mode(quick)).with_overrides(size_overrides or [])
    progress = Console(stderr=True) if as_json else console
    results: dict[str, Any] = {"quick": quick, "benchmarks": chosen, "machine": machine_info(), "sizes": asdict(sizes)}
    started = time.perf_counter()
    run_cpu = CpuShare()
    with progress.status("loading the base model"):
        context = BenchContext(sizes, results)
    results["base_load_seconds"] = context.base_load_seconds
    try:
        for name in chosen:
            begun = time.perf_counter()
            bench_cpu = CpuShare()
            with progress.status(f"benchmark {name}"):
                try:
                    benchmarks[name].run(context)
                except Exception as error:  # one broken benchmark must not lose the others' figures
                    logger.debug("benchmark %s failed", name, exc_info=True)
                    results.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"
                    progress.print(f"[red]benchmark {name} failed:[/red] {error}")
                    traceback.print_exc(file=sys.stderr)
            results["details"].setdefault("other_processes_cores", {})[name] = bench_cpu.others()
            progress.print(f"[dim]{name}: {time.perf_counter() - begun:.1f} s[/dim]")
    finally:
        context.close()
    results["machine"]["load_average_after"] = _load_average()
    others = run_cpu.others()
    results["machine"]["other_processes_cores"] = others
    if others is not None and others > 0.25:
        # Other processes on these cores inflate every figure, small operations most (thread oversubscription).
        warning = f"other processes kept {others:.2f} of {os.cpu_count()} CPUs busy during the run; timings are inflated"
        results["warnings"] = [warning]
    results["total_seconds"] = round(time.perf_counter() - started, 2)
    results["goals"] = goal_report(results)
    if as_json:
        console.out(json.dumps(results, indent=2, default=str), highlight=False)
    else:
        print_table(results, console)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str))
        progress.print(f"wrote {out}", soft_wrap=True)
    _keep(results)
    if report is not None:
        from localize.bench.report import write_report

        written = write_report(results, Path(report))
        progress.print(f"wrote {', '.join(str(path) for path in written)}", soft_wrap=True)
    return results


def _keep(results: dict[str, Any]) -> None:
    """A copy of the results in the workspace, where ``localize capacity`` reads its figures by default."""
    from localize.capacity import bench_folder
    from localize.settings import get_settings

    try:
        folder = bench_folder(get_settings().home)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        (folder / f"{stamp}-{'-'.join(results['benchmarks'])[:80]}.json").write_text(
            json.dumps(results, indent=2, default=str))
    except (OSError, ValueError) as error:  # a read-only workspace loses the copy, not the run
        logger.warning("could not keep the results in the workspace: %s", error)


def machine_info() -> dict[str, Any]:
    import peft
    import transformers

    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "load_average_before": _load_average(),
    }


class CpuShare:
    """How many cores other processes kept busy since creation: all CPU time (/proc/stat) minus this process's
    and its children's."""

    def __init__(self) -> None:
        self.start = self._snapshot()

    @staticmethod
    def _snapshot() -> tuple[float, float, float] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
        except (OSError, ValueError, IndexError):
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        own = os.times()
        return busy, own.user + own.system + own.children_user + own.children_system, time.perf_counter()

    def others(self) -> float | None:
        end = self._snapshot()
        if self.start is None or end is None or end[2] <= self.start[2]:
            return None
        busy, own, wall = (b - a for a, b in zip(self.start, end))
        return round(max(0.0, busy - own) / wall, 2)


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
