"""A real server (uvicorn subprocess): 32 concurrent HTTP clients, per micro-batch window."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, register_benchmark
from localize.bench.server import ADMIN_KEY, child_env, free_port, prepare_home, running_server, uvicorn_command
from localize.bench.stats import percentile


def run(ctx: BenchContext) -> None:
    """32 concurrent HTTP clients on loopback against a real server per micro-batch window: latency and rate."""
    sizes = ctx.sizes
    home = ctx.tmp / "serve-home"
    users = [f"trader{i}" for i in range(sizes.http_clients)]
    prepare_home(ctx, home, users)
    by_window = {}
    for window in sizes.http_windows_ms:
        by_window[f"{window:g}"] = _serve_run(ctx, home, users, window)
    chosen = by_window[f"{sizes.http_windows_ms[-1] if 2.0 not in sizes.http_windows_ms else 2.0:g}"]
    ctx.results.update({
        "predict_p50_ms": chosen["p50_ms"],
        "predict_p99_ms": chosen["p99_ms"],
        "predict_rps": chosen["rps"],
        "predict_by_batch_window_ms": by_window,
    })
    ctx.notes["serve"] = (
        f"uvicorn subprocess (the API app, no worker) on 127.0.0.1; {sizes.http_clients} client threads "
        f"(httpx, keep-alive), each {sizes.http_requests_per_client} sequential POST "
        "/tasks/{task}/users/{user}/predict with one new text for its own user (default head adapter); "
        "predict_* are for LOCALIZE_BATCH_WINDOW_MS=2 (the default); predict_by_batch_window_ms gives the "
        "trade-off (0 = no merging)")


def _serve_run(ctx: BenchContext, home: Path, users: list[str], window: float) -> dict[str, float]:
    import httpx

    port = free_port()
    env = child_env(home, LOCALIZE_ADMIN_KEY=ADMIN_KEY, LOCALIZE_BATCH_WINDOW_MS=str(window))
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    per_client = ctx.sizes.http_requests_per_client
    texts = ctx.texts
    latencies: list[float] = []
    errors: list[str] = []
    with running_server(uvicorn_command(port), env, port) as url:
        for name in users:  # warm-up: base loaded, every adapter resident
            response = httpx.post(f"{url}/tasks/bench/users/{name}/predict", json={"texts": [texts[0]]},
                                  headers=headers, timeout=120)
            response.raise_for_status()
        lock = threading.Lock()
        barrier = threading.Barrier(len(users) + 1)

        def client(index: int, name: str) -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
                barrier.wait()
                for request in range(per_client):
                    text = texts[(index * per_client + request) % len(texts)]
                    begun = time.perf_counter()
                    response = http.post(f"/tasks/bench/users/{name}/predict", json={"texts": [text]})
                    elapsed = time.perf_counter() - begun
                    with lock:
                        if response.status_code == 200:
                            latencies.append(elapsed)
                        else:
                            errors.append(f"{response.status_code}: {response.text[:200]}")

        threads = [threading.Thread(target=client, args=(i, name)) for i, name in enumerate(users)]
        for thread in threads:
            thread.start()
        barrier.wait()
        begun = time.perf_counter()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - begun
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed, first: {errors[0]}")
    return {"p50_ms": round(1000 * percentile(latencies, 50), 1), "p99_ms": round(1000 * percentile(latencies, 99), 1),
            "rps": round(len(latencies) / wall, 1), "requests": len(latencies)}


register_benchmark(Benchmark(
    "serve", run, "a real server (uvicorn subprocess): 32 concurrent HTTP clients, per micro-batch window"))
