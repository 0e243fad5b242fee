"""What the server process that forks training workers (``localize.supervisor``) holds before the first fork:
everything a worker would otherwise import on its first job (the method plugins with peft and transformers, the
optimizers' dynamo machinery) and, on a CPU-only machine, the frozen base model itself. A restarted worker then
starts training within a second instead of spending tens of seconds on imports and loading weights.

Importing this module does that work. Nothing here opens the database or starts a thread, so forking stays safe;
the base model is left to each worker when CUDA is present (a CUDA context does not survive a fork)."""
from __future__ import annotations

import logging

import accelerate  # noqa: F401  (peft reaches it while training; it brings boto3 and more: seconds)
import torch
import torch._dynamo  # noqa: F401  (the optimizers import it on their first step)

import localize.activations  # noqa: F401
import localize.adapters  # noqa: F401  (every method plugin)
import localize.engine  # noqa: F401
import localize.services.adapters  # noqa: F401
import localize.services.job_runs  # noqa: F401
import localize.store  # noqa: F401
import localize.training  # noqa: F401  (and with it sklearn and scipy)
import localize.worker  # noqa: F401

logger = logging.getLogger(__name__)


def _load_base_model() -> None:
    from localize.runtime import Runtime
    from localize.settings import get_settings

    settings = get_settings()
    if settings.device not in ("auto", "cpu") or torch.cuda.is_available():
        return
    # One thread here, so this process never starts an OpenMP thread pool: a child forked after one was started
    # hangs in its first parallel operation. Each worker sets its own thread count.
    torch.set_num_threads(1)
    try:
        Runtime(settings).base  # noqa: B018  (loads it into the process-wide cache the workers inherit)
    except Exception:  # noqa: BLE001  (each worker then loads it itself and reports the problem on its job)
        logger.exception("could not preload the base model for training workers")
    finally:
        get_settings.cache_clear()  # a worker reads its settings afresh


_load_base_model()
