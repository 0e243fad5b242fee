"""The labelling queue: which pool texts a user should label next, to teach their own model the most.

:func:`order_queue` is the whole ordering rule, on plain probability arrays (so a simulation can call it):

- with the user's adapter: ``uncertainty_weight * (1 - margin) + disagreement_weight * disagreement``, where the
  margin is the gap between the user's model's top two probabilities and the disagreement is the total variation
  distance between the user's model and the task prior (0 without a prior);
- without an adapter: the task prior's least certain texts first (``1 - margin`` of the prior);
- with neither: random order;

and in every case a ``random_share`` of the slots, spread evenly through the queue, holds random picks, so the
queue also samples texts the models are sure about (they may be sure and wrong).
"""
from __future__ import annotations

import random
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from sqlmodel import Session

from localize.db.models import AdapterVersion, Task, User
from localize.errors import ValidationError
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services import text_pool
from localize.services.predictions import forward

# The mix: a quarter uncertainty, three quarters disagreement with the prior, half the picks at random. Chosen by
# the active-learning simulation of the product's own model (heads on a task prior trained without the simulated
# users) on MD-Agreement users that reports/active_learning.md leaves out (research/queue_mix_on_held_out_users.py
# --encoder prior): the best mean curve of five mixes and the fewest labels to reach random order's 200-label
# macro-F1; uncertainty alone and fewer random picks were the worst there.
DEFAULT_UNCERTAINTY_WEIGHT = 0.25
DEFAULT_DISAGREEMENT_WEIGHT = 0.75
DEFAULT_RANDOM_SHARE = 0.5
MAX_LIMIT = 500
# Most candidates scored per request: past this a random sample of them is scored, which bounds a queue's latency.
MAX_CANDIDATES = 2000


@dataclass(frozen=True)
class Pick:
    index: int  # into the candidates
    score: float
    uncertainty: float | None
    disagreement: float | None
    reason: str  # "active": scored by the user's model; "prior": by the task prior's uncertainty; "random"


def margin_uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """``1 - (p_top1 - p_top2)`` per row of ``[rows, labels]`` probabilities: 1 for a tie, 0 for a sure answer."""
    ordered = np.sort(probabilities, axis=1)
    return 1.0 - (ordered[:, -1] - ordered[:, -2])


def disagreement(user: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Total variation distance between two ``[rows, labels]`` probability arrays, in [0, 1]."""
    return 0.5 * np.abs(user - prior).sum(axis=1)


def check_weights(uncertainty_weight: float, disagreement_weight: float, random_share: float) -> None:
    problems = []
    for name, value in (("uncertainty_weight", uncertainty_weight), ("disagreement_weight", disagreement_weight)):
        if not np.isfinite(value) or value < 0:
            problems.append(f"{name}={value} must be a number >= 0")
    if not np.isfinite(random_share) or not 0 <= random_share <= 1:
        problems.append(f"random_share={random_share} must be in [0, 1]")
    if problems:
        raise ValidationError("; ".join(problems))


def order_queue(
    *,
    user_probabilities: np.ndarray | None,
    prior_probabilities: np.ndarray | None,
    n_candidates: int,
    limit: int,
    uncertainty_weight: float = DEFAULT_UNCERTAINTY_WEIGHT,
    disagreement_weight: float = DEFAULT_DISAGREEMENT_WEIGHT,
    random_share: float = DEFAULT_RANDOM_SHARE,
    seed: int = 0,
) -> list[Pick]:
    """The first ``limit`` of ``n_candidates`` texts in queue order; probabilities are ``[n_candidates, labels]``
    (``None``: no such model). Deterministic for a given ``seed``."""
    check_weights(uncertainty_weight, disagreement_weight, random_share)
    rng = random.Random(seed)
    uncertainty = agreement_gap = None
    if user_probabilities is not None:
        uncertainty = margin_uncertainty(user_probabilities)
        agreement_gap = (disagreement(user_probabilities, prior_probabilities) if prior_probabilities is not None
                         else np.zeros(n_candidates))
        scores, reason = uncertainty_weight * uncertainty + disagreement_weight * agreement_gap, "active"
    elif prior_probabilities is not None:
        uncertainty = margin_uncertainty(prior_probabilities)
        scores, reason = uncertainty, "prior"
    else:
        scores, reason = np.array([rng.random() for _ in range(n_candidates)]), "random"
    # Ties (common for a fresh model) are broken at random rather than by text id.
    tiebreak = np.array([rng.random() for _ in range(n_candidates)])
    ranked = [int(i) for i in np.lexsort((tiebreak, -scores))]
    limit = min(limit, n_candidates)
    taken: set[int] = set()
    picks: list[Pick] = []
    next_ranked = 0
    for slot in range(limit):
        # Bresenham spacing: slot k is random when floor((k+1)*share) steps up, so random picks spread evenly.
        random_slot = reason != "random" and int((slot + 1) * random_share) > int(slot * random_share)
        if random_slot:
            remaining = [i for i in range(n_candidates) if i not in taken]
            index = rng.choice(remaining)
            pick_reason = "random"
        else:
            while ranked[next_ranked] in taken:
                next_ranked += 1
            index, pick_reason = ranked[next_ranked], reason
        taken.add(index)
        picks.append(Pick(index=index, score=float(scores[index]),
                          uncertainty=None if uncertainty is None else float(uncertainty[index]),
                          disagreement=None if agreement_gap is None else float(agreement_gap[index]),
                          reason=pick_reason))
    return picks


@dataclass
class QueueEntry:
    text_id: int
    text: str
    source: str
    pick: Pick


@dataclass
class Queue:
    entries: list[QueueEntry]
    strategy: str  # "active", "prior" or "random": what ordered it
    version: int | None  # the user's adapter version that scored it
    prior_version: int | None
    candidates: int


def _probabilities(runtime: Runtime, row: AdapterVersion, texts: list[str], labels: list[str]) -> np.ndarray:
    outputs = forward(runtime=runtime, rows=[(row, text) for text in texts])
    return np.array([[out.probabilities.get(label, 0.0) for label in labels] for out in outputs], dtype=float)


def build_queue(
    *,
    session: Session,
    runtime: Runtime,
    task: Task,
    user: User,
    limit: int = 10,
    uncertainty_weight: float = DEFAULT_UNCERTAINTY_WEIGHT,
    disagreement_weight: float = DEFAULT_DISAGREEMENT_WEIGHT,
    random_share: float = DEFAULT_RANDOM_SHARE,
    seed: int | None = None,
) -> Queue:
    """The next ``limit`` texts for ``user`` to label in ``task``, scored by their active adapter and the prior."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit={limit!r} must be a whole number from 1 to {MAX_LIMIT}")
    check_weights(uncertainty_weight, disagreement_weight, random_share)
    pool = text_pool.candidates(session=session, task=task, user=user)
    # The seed follows the user's progress, so the queue is stable between answers and moves on after each one.
    seed = hash((user.id, task.id, len(pool))) & 0xFFFFFFFF if seed is None else seed
    if len(pool) > MAX_CANDIDATES:
        pool = sorted(random.Random(seed).sample(pool, MAX_CANDIDATES), key=lambda c: c.text_id)
    mine = adapter_service.active_version(session=session, task=task, user=user)
    prior = adapter_service.active_version(session=session, task=task, user=None)
    texts = [candidate.text for candidate in pool]
    user_probabilities = _probabilities(runtime, mine, texts, task.labels) if mine is not None and pool else None
    prior_probabilities = _probabilities(runtime, prior, texts, task.labels) if prior is not None and pool else None
    picks = order_queue(user_probabilities=user_probabilities, prior_probabilities=prior_probabilities,
                        n_candidates=len(pool), limit=limit, uncertainty_weight=uncertainty_weight,
                        disagreement_weight=disagreement_weight, random_share=random_share, seed=seed)
    strategy = "active" if mine is not None else "prior" if prior is not None else "random"
    return Queue(
        entries=[QueueEntry(text_id=pool[p.index].text_id, text=pool[p.index].text, source=pool[p.index].source,
                            pick=p) for p in picks],
        strategy=strategy, version=None if mine is None else mine.version,
        prior_version=None if prior is None else prior.version, candidates=len(pool),
    )


# The label page asks for one text at a time; scoring the whole pool for each answer would cost a forward pass over
# every candidate per click. A user's queue is scored in batches and kept until their model (or the prior) changes
# or the batch is used up; entries answered or skipped meanwhile are dropped as they are met.
_BATCHES: OrderedDict[tuple, list[QueueEntry]] = OrderedDict()
_BATCHES_LOCK = threading.Lock()
_BATCHES_KEPT = 256


def next_entries(
    *, session: Session, runtime: Runtime, task: Task, user: User, count: int = 1, batch: int = 20
) -> tuple[list[QueueEntry], str]:
    """The next ``count`` texts of ``user``'s queue and the strategy that ordered them, from a cached batch."""
    mine = adapter_service.active_version(session=session, task=task, user=user)
    prior = adapter_service.active_version(session=session, task=task, user=None)
    key = (id(runtime), task.id, user.id, None if mine is None else mine.id, None if prior is None else prior.id)
    strategy = "active" if mine is not None else "prior" if prior is not None else "random"
    with _BATCHES_LOCK:
        cached = list(_BATCHES.get(key, []))
    open_ids = text_pool.open_text_ids(session=session, task=task, user=user,
                                       text_ids=[entry.text_id for entry in cached])
    entries = [entry for entry in cached if entry.text_id in open_ids]
    if len(entries) < count:
        entries = build_queue(session=session, runtime=runtime, task=task, user=user,
                              limit=max(batch, count)).entries
    with _BATCHES_LOCK:
        _BATCHES[key] = entries
        _BATCHES.move_to_end(key)
        while len(_BATCHES) > _BATCHES_KEPT:
            _BATCHES.popitem(last=False)
    return entries[:count], strategy
