"""One local Ray cluster for every test of this folder: starting Ray costs seconds on two cores."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """``ray`` connected to a fresh local cluster of 2 CPUs. On CI a missing Ray is a failure, not a skip."""
    if os.environ.get("CI") == "true":
        import ray
    else:
        ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()

