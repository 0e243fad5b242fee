"""``localize worker`` and ``localize serve``: the long-running processes."""
from __future__ import annotations

import logging
from typing import Annotated, Optional

import typer

from localize.cli.common import clean_errors, make_runtime, out
from localize.cli.root import app

RayOpt = Annotated[Optional[str], typer.Option(
    "--ray", metavar="ADDRESS", help="Ray cluster: auto, local (start one here), host:6379 or ray://host:10001; "
    "default LOCALIZE_RAY_ADDRESS.")]


@app.command()
def worker(
    once: Annotated[bool, typer.Option(help="Run at most one job, then exit (with Ray: the jobs queued now, "
                                            "in parallel).")] = False,
    ray_address: RayOpt = None,
    max_concurrent: Annotated[Optional[int], typer.Option(
        min=1, help="With Ray: most jobs at once (default: as many as the cluster's CPUs/GPUs hold).")] = None,
) -> None:
    """Run training jobs from the queue until stopped: in this process, or as Ray tasks with --ray."""
    logging.getLogger("localize").setLevel(logging.INFO)
    with clean_errors():
        runtime = make_runtime()
        address = ray_address or runtime.settings.ray_address
        if address:
            from localize.distributed.training import RayWorker

            runner = RayWorker(runtime, address=address, max_concurrent=max_concurrent)
            out().print(f"Ray worker {runner.dispatcher_id}: each job asks for {runner.resources.num_cpus} CPU(s) "
                        f"and {runner.resources.num_gpus} GPU(s), up to {runner.resources.max_concurrent} at once")
        else:
            from localize.worker import Worker

            runner = Worker(runtime)
            runner.install_signal_handlers()  # SIGTERM and Ctrl-C give the running job back to the queue
    if once:
        if address:
            for outcome in runner.run_until_idle():
                out().print(f"job {outcome['job_id']}: {outcome.get('state')}")
        else:
            try:
                runner.run_once()
            finally:
                runner.restore_signal_handlers()
        return
    try:
        runner.run_forever()
    except KeyboardInterrupt:
        runner.stop()
        if address:
            runner.shutdown()
    if not address:
        from localize.worker import exit_now

        exit_now(0)  # stopped and its job given back: end now, not after seconds of interpreter teardown


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    with_worker: Annotated[bool, typer.Option("--worker/--no-worker", help="Also run one training worker.")] = True,
    ray_address: RayOpt = None,
    replicas: Annotated[Optional[int], typer.Option(
        min=1, help="With --ray: prediction replicas (default LOCALIZE_RAY_SERVE_REPLICAS).")] = None,
    attach: Annotated[bool, typer.Option(
        "--attach", help="With --ray: use the prediction replicas already deployed (another API replica "
                         "deployed them) instead of deploying.")] = False,
) -> None:
    """Run the HTTP API (and, by default, one training worker in its own process). With --ray, predictions run on
    Ray Serve replicas and the worker runs jobs as Ray tasks."""
    from localize.server import run_server

    with clean_errors():
        if (replicas or attach) and not ray_address:
            raise ValueError("--replicas and --attach need --ray ADDRESS")
        run_server(host=host, port=port, with_worker=with_worker, ray_address=ray_address, replicas=replicas,
                   deploy=not attach)
