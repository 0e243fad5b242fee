"""Many users of one task with the default recipe, written straight through the store and the database.

The default recipe (``prior-head``) gives a task one shared prior (LoRA on the base's top layers) and each user a
linear head on the prior's encoding: 3 labels x 384 weights plus biases, a few KB stored. Training 100,000 heads
would measure training, not serving, so the benchmarks that need a large user base generate the heads instead
(random, each user its own) and store each one exactly as a training job would: its own store key and version,
files with their sha256, an active ``AdapterVersion`` row whose encoder is the prior's version. Only the
database rows go in bulk (one insert per chunk instead of a flush per user), and the files are not fsynced (a
generated population lives in a throwaway folder: a store write's durability is not what these benchmarks
measure, and it is most of a write's time).
"""
from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from unittest import mock

import torch


@dataclass(frozen=True)
class Population:
    task: str
    users: list[str]  # names, in creation order
    prior_store_key: str
    seconds: float  # wall time to write them
    stored_head_bytes: int  # bytes of one user's version in the store (all files)


def seed_population(runtime, *, task: str, users: int, prior=None, seed: int = 0, prefix: str = "u",  # noqa: ANN001
                    chunk: int = 2000, progress: Callable[[int], None] | None = None) -> Population:
    """Task ``task`` (the demo labels) with a stored task prior (``prior``, else a random LoRA of the default
    recipe's shape) and ``users`` users named ``<prefix>0``, ``<prefix>1``, ... each with an active generated
    head reading it."""
    from sqlalchemy import insert
    from sqlmodel import select

    from localize.adapters import make_method
    from localize.base_model import get_base_model
    from localize.db.models import AdapterVersion, User, utcnow
    from localize.db.session import session_scope
    from localize.demo_data import LABELS
    from localize.engine import AdapterWeights
    from localize.services.adapters import register_version, store_key
    from localize.services.tasks import create_task
    from localize.training_args import recommended_options

    begun = time.perf_counter()
    base = get_base_model()
    dims = base.dims
    generator = torch.Generator().manual_seed(seed)
    if prior is None:
        method = make_method("lora", recommended_options("lora"), dims)
        params = {k: v if v.any() else torch.randn(v.shape, generator=generator) * 0.01
                  for k, v in method.init_params(base, generator).items()}
        prior = AdapterWeights(method=method, params=params, head=_head(len(LABELS), dims.hidden_size, generator),
                               labels=list(LABELS), base_model_id=dims.model_id, version=1)
    with session_scope(runtime.database) as session:
        task_row = create_task(session=session, name=task, labels=LABELS)
        stored = runtime.store.save(store_key(task_row, None), 1, prior)
        register_version(session=session, task=task_row, user=None, weights=prior, stored=stored, n_labels=0,
                         labels_updated_at=None, activate=True)
        task_id = task_row.id
        prior_key = stored.key
    encoder = runtime.store.load(prior_key, 1)
    with session_scope(runtime.database) as session:
        prior_row_id = session.exec(select(AdapterVersion.id).where(
            AdapterVersion.store_key == prior_key, AdapterVersion.version == 1)).one()
    head_method = make_method("head", {}, dims)
    names = [f"{prefix}{i}" for i in range(users)]
    nbytes = 0
    for start in range(0, users, chunk):
        part = names[start : start + chunk]
        with session_scope(runtime.database) as session, _no_fsync():
            now = utcnow()
            session.execute(insert(User), [{"name": name, "created_at": now} for name in part])
            ids = dict(session.exec(select(User.name, User.id).where(User.name.in_(part))).all())
            versions = []
            for name in part:
                weights = AdapterWeights(method=head_method, params={},
                                         head=_head(len(LABELS), dims.hidden_size, generator), labels=list(LABELS),
                                         base_model_id=dims.model_id, version=1,
                                         meta={"encoder": dict(encoder.meta["source"])})
                weights.encoder = encoder
                key = f"task-{task_id}/user-{ids[name]}"
                saved = runtime.store.save(key, 1, weights)
                nbytes = saved.nbytes
                versions.append({
                    "task_id": task_id, "user_id": ids[name], "version": 1, "method": "head", "is_active": True,
                    "store_key": key, "files": saved.files, "metrics": {},
                    "training_args": {"recipe": "prior-head", "generated": True}, "n_labels": 0,
                    "labels_updated_at": now, "trainable_params": weights.trainable_params, "nbytes": saved.nbytes,
                    "created_at": now, "encoder_version_id": prior_row_id})
            session.execute(insert(AdapterVersion), versions)
        if progress is not None:
            progress(start + len(part))
    return Population(task=task, users=names, prior_store_key=prior_key, seconds=round(time.perf_counter() - begun, 2),
                      stored_head_bytes=nbytes)


@contextlib.contextmanager
def _no_fsync() -> Iterator[None]:
    with mock.patch.object(os, "fsync", lambda fd: None):
        yield


def _head(labels: int, hidden: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    # Spread like a fitted head's (weights of a few tenths), so users disagree on the same text.
    return {"weight": torch.randn(labels, hidden, generator=generator) * 0.3,
            "bias": torch.randn(labels, generator=generator) * 0.1}
