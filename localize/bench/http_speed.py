"""HTTP at the engine's speed: single-text predictions through a real server against the bare engine, same run.

Measured in this process and one server subprocess (the API app under uvicorn, default settings):

1. the bare engine: the same 32 users' head adapters, ``Engine.predict`` on batches of ``batch`` rows (each row
   another user's text), in this process: the texts/s that HTTP is compared with;
2. closed loop: ``http_clients`` connections, each sending one single-text ``POST .../predict`` for its own user
   as soon as the previous answer came: the server's throughput (``http_speed_rps``), and
   ``http_speed_ratio`` = that / the engine's texts/s (goal >= 0.8). The engine's batches and the server's load
   alternate in rounds, so a change in what else runs on the machine hits both;
3. open loop: requests arrive at half the engine's texts/s as a Poisson process, whatever the server's state
   (a late answer does not delay the next arrival): the latency from each arrival to its answer, p50 and p99
   (goal: p99 <= 150 ms).

CPU seconds are counted too (the engine's per text, the server's and the load generator's per request): on a
machine shared with other busy processes, wall-clock rates swing with their load, while ``http_speed_cpu_ratio``
says what the two would reach with the cores to themselves.

The load generator is an asyncio client that writes prebuilt HTTP/1.1 requests on keep-alive connections and
reads the answers with nothing but a header scan, so it takes as little as possible of the CPU the server and the
engine share with it. Its garbage collector is paused while it measures: this process holds the bench's base model
and texts, and one full collection here stalls every request in flight for a few hundred milliseconds, which the
latencies would charge to the server. The server runs as ``localize serve`` runs it (its start-up objects kept out
of its own collector's passes, one intra-op thread per engine pass: ``localize.server.server_environment``).
"""
from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from localize.bench.context import BenchContext
from localize.bench.registry import Benchmark, Goal, register_benchmark
from localize.bench.server import ADMIN_KEY, child_env, free_port, prepare_home, running_server, uvicorn_command
from localize.bench.stats import percentile

TASK = "bench"


def run(ctx: BenchContext) -> None:
    sizes = ctx.sizes
    users = [f"trader{i}" for i in range(sizes.http_clients)]
    home = ctx.tmp / "http-speed-home"
    prepare_home(ctx, home, users, task=TASK)
    engine = _BareEngine(ctx, len(users))
    port = free_port()
    env = child_env(home, LOCALIZE_ADMIN_KEY=ADMIN_KEY)
    rounds = max(sizes.repeats, 1)
    pids: list[int] = []
    with running_server(uvicorn_command(port), env, port, started=pids.append), collector_paused():
        server = pids[0]
        load = _Load(port, users, ctx.texts)
        asyncio.run(load.closed(sizes.http_clients, sizes.http_warmup_seconds))  # base loaded, adapters resident
        engine.measure()  # warm-up
        closed: list[dict[str, float]] = []
        # Rounds alternate the engine and the server, so a change in what else runs on the machine hits both.
        for _ in range(rounds):
            engine.measure()
            closed.append(_with_cpu(server, lambda: asyncio.run(
                load.closed(sizes.http_clients, sizes.http_seconds / rounds))))
        engine_rate = statistics.median(engine.rates)
        offered = engine_rate / 2
        opened = asyncio.run(load.open(offered, sizes.http_open_seconds))
    requests = sum(part["requests"] for part in closed)
    wall = sum(part["wall"] for part in closed)
    latencies = [latency for part in closed for latency in part["latencies"]]
    engine_cpu = statistics.median(engine.cpu_per_text)
    server_cpu = sum(part["server_cpu"] for part in closed) / requests
    client_cpu = sum(part["client_cpu"] for part in closed) / requests
    ctx.details["http_speed_engine_batch_seconds"] = [round(t, 4) for t in engine.times]
    ctx.details["http_speed_rps_by_round"] = [round(part["requests"] / part["wall"], 1) for part in closed]
    ctx.results.update({
        "http_speed_engine_texts_per_second": round(engine_rate, 1),
        "http_speed_rps": round(requests / wall, 1),
        "http_speed_ratio": round(requests / wall / engine_rate, 3),
        "http_speed_closed_p50_ms": round(1000 * percentile(latencies, 50), 1),
        "http_speed_closed_p99_ms": round(1000 * percentile(latencies, 99), 1),
        "http_speed_open_offered_rps": round(offered, 1),
        "http_speed_open_rps": opened["rps"],
        "http_speed_open_p50_ms": opened["p50_ms"],
        "http_speed_open_p99_ms": opened["p99_ms"],
        "http_speed_engine_cpu_ms_per_text": round(1000 * engine_cpu, 2),
        "http_speed_server_cpu_ms_per_request": round(1000 * server_cpu, 2),
        "http_speed_client_cpu_ms_per_request": round(1000 * client_cpu, 2),
        "http_speed_cpu_ratio": round(engine_cpu / (server_cpu + client_cpu), 3),
        "http_speed_requests": requests + opened["requests"],
    })
    ctx.notes["http_speed"] = (
        f"bare engine: {sizes.batch}-row batches of {len(users)} users' head adapters in this process; server: "
        f"uvicorn subprocess (the API app, no worker, default settings) on 127.0.0.1; closed loop: "
        f"{sizes.http_clients} keep-alive connections, each POST /tasks/{{task}}/users/{{user}}/predict with one "
        f"text for its own user, {sizes.http_seconds:g} s in {rounds} rounds alternating with the engine's "
        f"batches, after {sizes.http_warmup_seconds:g} s of warm-up; open loop: Poisson arrivals at half the "
        f"engine's texts/s for {sizes.http_open_seconds:g} s, latency from each arrival to its answer (waiting for a "
        "free connection included); cpu_ratio: the engine's CPU seconds per text over the server's and the "
        "load generator's per request (the texts/s ratio the two would reach with the cores to themselves)")


@contextlib.contextmanager
def collector_paused():
    """This process's garbage collector off while it generates load: what exists now is collected once and frozen,
    so the pause afterwards walks only what the load made."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


class _BareEngine:
    """The engine's texts/s and CPU per text on ``batch``-row batches of the server's users' (same) adapters."""

    def __init__(self, ctx: BenchContext, users: int) -> None:
        from localize.engine import Engine

        self.engine = Engine(ctx.base, capacity=users)
        adapters = [self.engine.adapter(("http", i), lambda w=w: w)
                    for i, w in enumerate(ctx.random_adapters("head", {}, users, seed=8))]
        self.size = ctx.sizes.batch
        self.rows = [(adapters[i % users], ctx.texts[i % len(ctx.texts)]) for i in range(4 * self.size)]
        self.turn = 0
        self.times: list[float] = []
        self.rates: list[float] = []
        self.cpu_per_text: list[float] = []

    def measure(self) -> None:
        start = (self.turn * self.size) % len(self.rows)
        batch = (self.rows + self.rows)[start : start + self.size]
        self.turn += 1
        cpu, began = time.process_time(), time.perf_counter()
        self.engine.predict(batch)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        if self.turn > 1:  # the first is the warm-up
            self.times.append(wall)
            self.rates.append(self.size / wall)
            self.cpu_per_text.append(cpu / self.size)


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_cpu(server: int, measure) -> dict:  # noqa: ANN001
    server_cpu, client_cpu = _process_cpu(server), time.process_time()
    result = measure()
    result["server_cpu"] = _process_cpu(server) - server_cpu
    result["client_cpu"] = time.process_time() - client_cpu
    return result


class _Load:
    """Single-text predictions over raw keep-alive HTTP/1.1 connections."""

    def __init__(self, port: int, users: list[str], texts: list[str]) -> None:
        self.port = port
        self.users = users
        self.texts = texts
        self.sent = 0

    def _request(self, user: str) -> bytes:
        text = self.texts[self.sent % len(self.texts)]
        self.sent += 1
        body = json.dumps({"texts": [text]}).encode()
        head = (f"POST /tasks/{TASK}/users/{user}/predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {ADMIN_KEY}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        return head.encode() + body

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def _exchange(self, connection, user: str) -> None:  # noqa: ANN001
        reader, writer = connection
        writer.write(self._request(user))
        head = await reader.readuntil(b"\r\n\r\n")
        status = head[9:12]
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await reader.readexactly(length)
        if status != b"200":
            raise RuntimeError(f"{user}: HTTP {status.decode()}: {body[:300].decode(errors='replace')}")

    async def closed(self, clients: int, seconds: float) -> dict[str, Any]:
        """Each connection sends its next request as soon as its answer came, for ``seconds``."""
        connections = [await self._connect() for _ in range(clients)]
        latencies: list[float] = []
        begun = time.perf_counter()
        deadline = begun + seconds

        async def client(index: int) -> None:
            user = self.users[index % len(self.users)]
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                await self._exchange(connections[index], user)
                latencies.append(time.perf_counter() - sent)

        try:
            await asyncio.gather(*(client(i) for i in range(clients)))
        finally:
            for _, writer in connections:
                writer.close()
        wall = time.perf_counter() - begun
        return {"requests": len(latencies), "wall": wall, "latencies": latencies}

    async def open(self, per_second: float, seconds: float) -> dict[str, float]:
        """Poisson arrivals at ``per_second``; each takes a free connection (opening one if none is free)."""
        free: list = [await self._connect() for _ in range(len(self.users))]
        opened = list(free)
        latencies: list[float] = []
        pending: list[asyncio.Task] = []
        arrivals = random.Random(7)
        begun = time.perf_counter()
        due = begun

        async def one(arrival: float, user: str) -> None:
            connection = free.pop() if free else await self._connect()
            if connection not in opened:
                opened.append(connection)
            try:
                await self._exchange(connection, user)
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed a connection that sat idle past its keep-alive timeout: send on a new one.
                connection[1].close()
                connection = await self._connect()
                opened.append(connection)
                await self._exchange(connection, user)
            latencies.append(time.perf_counter() - arrival)
            free.append(connection)

        try:
            index = 0
            while due < begun + seconds:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(one(due, self.users[index % len(self.users)])))
                index += 1
                due += arrivals.expovariate(per_second)
            await asyncio.gather(*pending)
        finally:
            for _, writer in opened:
                writer.close()
        return _summary(latencies, time.perf_counter() - begun)


def _summary(latencies: list[float], wall: float) -> dict[str, float]:
    return {"rps": round(len(latencies) / wall, 1), "requests": len(latencies),
            "p50_ms": round(1000 * percentile(latencies, 50), 1), "p99_ms": round(1000 * percentile(latencies, 99), 1)}


register_benchmark(Benchmark(
    "http_speed", run, "single-text HTTP predictions: closed-loop throughput against the bare engine, and open-loop "
    "latency at half the engine's rate", goals=(Goal("http_speed_ratio", ">=", 0.8),
                                                Goal("http_speed_open_p99_ms", "<=", 150.0))))
