"""Training that gives the same adapter for the same labels and seed, run after run, on a CPU.

Some of PyTorch's CPU kernels add floating-point numbers from several threads in whatever order the threads finish
(the backward of indexing a tensor with another, for one, adds with atomics), so two runs of the same training differ
in the last digits, and early stopping can turn that into a different epoch and a different model. PyTorch has an
ordered implementation of each such kernel; :func:`deterministic_kernels` switches them on while a training runs.

The switch is process-wide in PyTorch, so it is counted: trainings that overlap (threads of one worker) keep it on
until the last one ends, and then the caller's setting comes back. On a GPU nothing changes: cuBLAS would also need
``CUBLAS_WORKSPACE_CONFIG`` set before CUDA starts, which a library cannot do for its caller.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_lock = threading.Lock()
_depth = 0
_saved: tuple[bool, bool] = (False, False)  # the caller's (deterministic, warn_only), restored by the last to leave


@contextmanager
def deterministic_kernels(device: torch.device) -> Iterator[None]:
    """PyTorch's ordered kernels while the block runs on ``device`` (a CPU; other devices are left as they are).
    ``warn_only``: an operation without an ordered kernel warns instead of failing the training."""
    global _depth, _saved
    if device.type != "cpu":
        yield
        return
    with _lock:
        if _depth == 0:
            _saved = (torch.are_deterministic_algorithms_enabled(),
                      torch.is_deterministic_algorithms_warn_only_enabled())
            if not _saved[0]:
                torch.use_deterministic_algorithms(True, warn_only=True)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and not _saved[0]:
                torch.use_deterministic_algorithms(False, warn_only=_saved[1])
