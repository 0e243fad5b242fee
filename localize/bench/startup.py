"""Start-up of a database-only command: the wall time of ``localize tasks list`` in a fresh process, which must
stay well under a second (it needs no model, so it must not import torch)."""
from __future__ import annotations

import importlib.util
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import localize
from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.server import child_env
from localize.bench.stats import rounded

COMMAND = ("tasks", "list")
HEAVY = ("torch", "transformers", "alembic")  # modules a database-only command has no use for


def run(ctx: BenchContext) -> None:
    home = ctx.tmp / "startup-home"
    _prepare_home(home)
    env = child_env(home, PYTHONUNBUFFERED="1")
    command = [*_localize(), *COMMAND]

    cpu: list[float] = []

    def timed(argv: list[str]) -> float:
        used = _children_cpu_seconds()
        begun = time.perf_counter()
        child = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        seconds = time.perf_counter() - begun
        cpu.append(_children_cpu_seconds() - used)
        if child.returncode != 0:
            raise RuntimeError(f"`{' '.join(argv)}` exited {child.returncode}: {child.stderr[-1000:]}")
        return seconds

    timed(command)  # untimed: the files into the OS page cache
    repeats = ctx.sizes.startup_repeats
    cpu.clear()
    times = [timed(command) for _ in range(repeats)]
    command_cpu = list(cpu)
    floor = [timed([sys.executable, "-c", "pass"]) for _ in range(repeats)]
    # Which heavy modules the command imports: Python's own import log, one extra run.
    traced = subprocess.run([sys.executable, "-X", "importtime", "-m", "localize.cli", *COMMAND], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    imported = {match.group(1).split(".")[0]
                for match in re.finditer(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", traced.stderr, re.M)}
    ctx.details["startup_tasks_list_seconds"] = rounded(times)
    ctx.results.update({
        "startup_tasks_list_seconds": round(statistics.median(times), 3),
        # CPU time barely moves with other processes' load, wall time does: the two together tell them apart
        "startup_tasks_list_cpu_seconds": round(statistics.median(command_cpu), 3),
        "startup_interpreter_seconds": round(statistics.median(floor), 3),
        "startup_heavy_imports": ",".join(sorted(module for module in HEAVY if module in imported)) or "none",
        "startup_modules_without_bytecode": modules_without_bytecode(Path(localize.__file__).parent),
    })
    ctx.notes["startup"] = (
        f"`localize {' '.join(COMMAND)}` ({'the installed entry point' if command[0] != sys.executable else 'python -m localize.cli'}) "
        f"as a fresh process on a workspace whose schema is current, median of {repeats} runs after one untimed "
        "(spawn to exit, output captured); startup_tasks_list_cpu_seconds: the child's user + system CPU time "
        "(median); baseline startup_interpreter_seconds: `python -c pass`; "
        f"startup_heavy_imports: which of {', '.join(HEAVY)} the command imports (python -X importtime); "
        "startup_modules_without_bytecode: localize's modules with no current compiled bytecode, which every run "
        "compiles again where PYTHONDONTWRITEBYTECODE is set (about 7% of the command's instructions; "
        "scripts/setup.sh compiles them)")


def modules_without_bytecode(package: Path) -> int:
    """How many of the package's modules have no compiled bytecode as current as their source."""
    missing = 0
    for source in package.rglob("*.py"):
        compiled = Path(importlib.util.cache_from_source(str(source)))
        if not compiled.exists() or compiled.stat().st_mtime < source.stat().st_mtime:
            missing += 1
    return missing


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _localize() -> list[str]:
    """The ``localize`` entry point installed beside this interpreter (what a user runs), else ``-m``."""
    script = Path(sys.executable).parent / "localize"
    return [str(script)] if script.exists() else [sys.executable, "-m", "localize.cli"]


def _prepare_home(home: Path) -> None:
    from localize.db.session import session_scope
    from localize.demo_data import LABELS
    from localize.runtime import Runtime
    from localize.services.tasks import create_task
    from localize.settings import Settings

    runtime = Runtime(Settings(home=home, database_url=None, adapter_store=None, base_model=None))
    runtime.upgrade_database()
    with session_scope(runtime.database) as session:
        for name in ("startup-a", "startup-b"):
            create_task(session=session, name=name, labels=LABELS)
    runtime.database.dispose()


register_benchmark(Benchmark(
    "startup", run, "wall time of a database-only command (`localize tasks list`) in a fresh process",
    goals=(Goal("startup_tasks_list_seconds", "<", 1.0),)))
