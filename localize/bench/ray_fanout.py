"""One text for N users through Ray Serve replicas against the embedded fan-out, in one run on one workspace."""
from __future__ import annotations

import statistics
import time

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.stats import rounded

APP = "localize-bench-fanout"


def run(ctx: BenchContext) -> None:
    """Both paths answer the same service call, ``services.predictions.fanout`` (database look-up of every user's
    active version included), for ``ray_fanout_users`` generated default-recipe users, every adapter resident
    (one untimed fan-out first loads them)."""
    from localize.bench.population import seed_population
    from localize.bench.ray_cluster import deployed_app, local_cluster, replica_stats
    from localize.bench.server import ADMIN_KEY
    from localize.db.session import session_scope
    from localize.runtime import Runtime
    from localize.services.predictions import fanout
    from localize.services.tasks import get_task
    from localize.settings import Settings

    sizes = ctx.sizes
    n = sizes.ray_fanout_users
    home = ctx.tmp / "ray-fanout-home"
    embedded = Runtime(Settings(home=home, admin_key=ADMIN_KEY, resident_adapters=n + 16))
    embedded.upgrade_database()
    population = seed_population(embedded, task="fanout", users=n, seed=11)
    texts = iter(ctx.texts * 10)

    def fan(runtime: Runtime, users: list[str] | None = None) -> float:
        begun = time.perf_counter()
        with session_scope(embedded.database) as session:
            answers = fanout(session=session, runtime=runtime, task=get_task(session=session, name="fanout"),
                             text=next(texts), user_names=users)
        if len(answers) != len(users or population.users):
            raise RuntimeError(f"fan-out answered {len(answers)} of {len(users or population.users)} users")
        return time.perf_counter() - begun

    embedded_first = fan(embedded)
    embedded_times = [fan(embedded) for _ in range(sizes.fanout_repeats)]
    with local_cluster(sizes.ray_cpus):
        settings = Settings(home=home, admin_key=ADMIN_KEY, serving="ray", ray_address="local", ray_serve_app=APP,
                            ray_serve_replicas=sizes.ray_replicas, ray_replica_cpus=sizes.ray_replica_cpus,
                            ray_replica_adapters=n + 16)
        with deployed_app(settings) as handle:
            remote = Runtime(settings)
            # Memory at two resident counts, both after serving: the slope is what a resident adapter costs, the
            # intercept what a serving replica holds besides (base model, the working set of its passes).
            fan(remote, population.users[: max(1, n // 10)])
            tenth = replica_stats(handle, remote.remote_predictor)
            ray_first = fan(remote)
            warm_stats = replica_stats(handle, remote.remote_predictor)
            ray_times = [fan(remote) for _ in range(sizes.fanout_repeats)]
            stats = replica_stats(handle, remote.remote_predictor)
            refs = _refs(embedded, n)
            per_user = _per_user_calls(remote, handle, refs[: sizes.ray_fanout_per_user_calls], next(texts))
            rows_per_second = [_single_rows(handle, refs, sizes.ray_rows, ctx.texts) for _ in range(3)]
            after = replica_stats(handle, remote.remote_predictor)
            # The same rows a few at a time: smaller passes, so the cost of a pass and of a row can be told apart.
            _single_rows(handle, refs, sizes.ray_rows // 4, ctx.texts, in_flight=sizes.ray_rows_few_in_flight)
            few = replica_stats(handle, remote.remote_predictor)
    embedded_seconds, ray_seconds = statistics.median(embedded_times), statistics.median(ray_times)
    slope = max(0.0, (sum(s["rss_bytes"] for s in stats) - sum(s["rss_bytes"] for s in tenth))
                / max(1, sum(s["adapters_resident"] for s in stats) - sum(s["adapters_resident"] for s in tenth)))
    ctx.details.update({"ray_fanout_seconds": rounded(ray_times),
                        "ray_fanout_embedded_seconds": rounded(embedded_times)})
    ctx.results.update({
        "ray_fanout_users": n,
        "ray_fanout_replicas": len(stats),
        "ray_fanout_users_by_replica": sorted(s["adapters_resident"] for s in stats),
        "ray_fanout_seconds": round(ray_seconds, 4),
        "ray_fanout_embedded_seconds": round(embedded_seconds, 4),
        "ray_fanout_vs_embedded": round(ray_seconds / embedded_seconds, 3),
        "ray_fanout_first_seconds": round(ray_first, 3),
        "ray_fanout_embedded_first_seconds": round(embedded_first, 3),
        "ray_fanout_per_user_calls_users": per_user[0],
        "ray_fanout_per_user_calls_seconds": round(per_user[1], 4),
        "ray_fanout_per_user_calls_seconds_per_user_ms": round(1000 * per_user[1] / max(1, per_user[0]), 3),
        "ray_fanout_population_seconds": population.seconds,
        # The capacity model's per-replica figures (the keys scripts/bench_ray.py writes), from the same replicas:
        "serve_rows_per_second_per_replica": round(statistics.median(rows_per_second) / len(stats), 1),
        # What a replica answers per second of its own CPU: on a machine shared with other work the wall rate
        # above is what was left to it; on dedicated cores a saturated replica reaches this one.
        "serve_rows_per_cpu_second_per_replica": round(1000 / max(1e-9, _busy_ms_per_row(stats, after) or 0), 1),
        "serve_replica_cpus": sizes.ray_replica_cpus,
        "serve_replica_base_bytes": round(statistics.mean(s["rss_bytes"] for s in tenth)
                                          - slope * statistics.mean(s["adapters_resident"] for s in tenth)),
        # After 1,024 requests of different texts in flight a replica also holds their working set (not freed):
        "serve_replica_loaded_base_bytes": round(statistics.mean(s["rss_bytes"] for s in after)
                                                 - slope * statistics.mean(s["adapters_resident"] for s in after)),
        "serve_resident_adapter_bytes": round(slope),
        "serve_adapter_load_ms": round(1000 * sum(s["adapter_load_cpu_seconds"] for s in stats)
                                       / max(1, sum(s["adapter_loads"] for s in stats)), 3),
        "serve_rows_per_forward_pass": _rows_per_pass(stats, after),
        "serve_rows_per_forward_pass_few_in_flight": _rows_per_pass(after, few),
        "serve_fanout_row_ms": _busy_ms_per_row(warm_stats, stats),
        **_pass_and_row_ms((_rows_per_pass(stats, after), _busy_ms_per_row(stats, after)),
                           (_rows_per_pass(after, few), _busy_ms_per_row(after, few))),
        "stored_adapter_bytes": population.stored_head_bytes,
    })
    ctx.details["ray_rows_per_second_runs"] = [round(r, 1) for r in rows_per_second]
    ctx.notes["ray_fanout"] = (
        f"services.predictions.fanout of one new text to {n} generated default-recipe users (one shared random "
        f"task prior, a random linear head each), embedded (this process's engine) and through "
        f"{sizes.ray_replicas} Serve replicas of {sizes.ray_replica_cpus:g} CPU on a local Ray cluster "
        f"({sizes.ray_cpus:g} CPUs), same workspace and run; medians of {sizes.fanout_repeats} after one untimed "
        f"fan-out that loads every adapter; the API side sends one request per replica with the users ranked "
        f"first on it; per_user_calls: the same text to the first {per_user[0]} users as one Serve call per user "
        f"(how fan-out went through Ray before), all in flight at once; serve_*: the replicas' RSS after a "
        f"fan-out to a tenth of the users and after all {n} were resident (per adapter: the slope between the "
        f"two; base: the intercept; loaded base: RSS after the single-row phase less the resident adapters), "
        f"their mean load time, and "
        f"rows/s per replica for {sizes.ray_rows} single-row requests of distinct resident users in flight at "
        f"once (median of 3); serve_fanout_row_ms: replica CPU time (passes and loads) per row of the timed "
        f"fan-outs; serve_pass_ms + serve_row_ms x rows: CPU of a pass, from the CPU per row of those single-row "
        f"requests and of {sizes.ray_rows // 4} more sent {sizes.ray_rows_few_in_flight} at a time (smaller passes)")


def _busy_ms_per_row(before: list[dict], after: list[dict]) -> float | None:
    """Replica CPU time (forward passes and adapter loads, all replicas) per row answered between two stats."""
    rows = sum(a["rows"] for a in after) - sum(b["rows"] for b in before)
    busy = sum(a["pass_cpu_seconds"] + a["adapter_load_cpu_seconds"] for a in after) - sum(
        b["pass_cpu_seconds"] + b["adapter_load_cpu_seconds"] for b in before)
    return round(1000 * busy / rows, 4) if rows else None


def _rows_per_pass(before: list[dict], after: list[dict]) -> float:
    passes = sum(a["forward_passes"] for a in after) - sum(b["forward_passes"] for b in before)
    return round((sum(a["rows"] for a in after) - sum(b["rows"] for b in before)) / max(1, passes), 2)


def _pass_and_row_ms(many: tuple[float, float | None], few: tuple[float, float | None]) -> dict[str, float]:
    """CPU of a pass = pass_ms + rows x row_ms, from the CPU per row at two pass sizes (``(rows/pass, ms/row)``)."""
    (big, at_big), (small, at_small) = many, few
    if at_big is None or at_small is None or big <= small:
        return {"serve_row_ms": at_big} if at_big is not None else {}
    row_ms = max(1e-6, (at_big * big - at_small * small) / (big - small))
    return {"serve_row_ms": round(row_ms, 4), "serve_pass_ms": round(max(1e-6, (at_big - row_ms) * big), 4),
            "serve_row_ms_at_many_in_flight": at_big, "serve_row_ms_at_few_in_flight": at_small}


def _refs(embedded, n: int) -> list:  # noqa: ANN001
    """The users' active versions as the replicas get them, in creation order."""
    from sqlmodel import select

    from localize.db.models import AdapterVersion
    from localize.db.session import session_scope
    from localize.distributed.predictor import AdapterRef

    with session_scope(embedded.database) as session:
        rows = session.exec(select(AdapterVersion).where(AdapterVersion.is_active, AdapterVersion.user_id.is_not(None))
                            .order_by(AdapterVersion.id).limit(n)).all()
        return [AdapterRef.from_row(row) for row in rows]


def _per_user_calls(remote, handle, refs: list, text: str) -> tuple[int, float]:  # noqa: ANN001
    """One Serve call per user (all in flight), the way a fan-out reached the replicas before: seconds."""
    begun = time.perf_counter()
    calls = [handle.options(multiplexed_model_id=ref.model_id).predict.remote(ref, [text]) for ref in refs]
    for call in calls:
        call.result(timeout_s=remote.settings.ray_request_timeout_seconds * 10)
    return len(refs), time.perf_counter() - begun


def _single_rows(handle, refs: list, rows: int, texts: list[str],  # noqa: ANN001
                 in_flight: int | None = None) -> float:
    """Rows/s of the whole deployment: ``rows`` single-row requests, each a different resident user, all in flight
    (or ``in_flight`` at a time)."""
    chosen = [refs[(i * 7919) % len(refs)] for i in range(rows)]
    step = in_flight or rows
    begun = time.perf_counter()
    for start in range(0, rows, step):
        calls = [handle.options(multiplexed_model_id=ref.model_id).predict.remote(ref, [texts[i % len(texts)]])
                 for i, ref in enumerate(chosen[start : start + step], start)]
        for call in calls:
            call.result(timeout_s=600)
    return rows / (time.perf_counter() - begun)


register_benchmark(Benchmark(
    "ray_fanout", run, "one text for 10,000 users through 2 Ray Serve replicas vs embedded (--quick: 1,000)",
    goals=(Goal("ray_fanout_vs_embedded", "<", 3.0),)))
