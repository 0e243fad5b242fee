"""What the Ray benchmarks share: a local Ray cluster (this process's, or one it already joined, as in tests) and
the prediction application deployed on it, always removed afterwards."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def local_cluster(cpus: float) -> Iterator[Any]:
    """``ray`` joined to a cluster: the one this process already joined, else a new local one of ``cpus`` CPUs
    (shut down on exit)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        with contextlib.suppress(Exception):
            from ray import serve

            serve.shutdown()
        ray.shutdown()


@contextlib.contextmanager
def deployed_app(settings) -> Iterator[Any]:  # noqa: ANN001
    """The prediction application of ``settings`` deployed (its replicas ready); its handle; deleted on exit."""
    from ray import serve

    from localize.distributed.serving import deploy

    handle = deploy(settings)
    try:
        yield handle
    finally:
        with contextlib.suppress(Exception):
            serve.delete(settings.ray_serve_app)


def replica_stats(handle, predictor) -> list[dict[str, Any]]:  # noqa: ANN001
    """Every replica's ``stats()``: each asked through the router with a model id ranked first on that replica
    (a call without one reaches a random replica)."""
    from localize.distributed.routing import rendezvous_rank

    wanted = set(predictor.replica_ids())
    probes: dict[str, str] = {}
    for index in range(64 * max(1, len(wanted))):
        model_id = f"stats-probe-{index}"
        probes.setdefault(rendezvous_rank(model_id, sorted(wanted))[0], model_id)
        if len(probes) == len(wanted):
            break
    stats = [handle.options(multiplexed_model_id=model_id).stats.remote().result() for model_id in probes.values()]
    return sorted(stats, key=lambda s: s["replica"])
