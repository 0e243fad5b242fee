"""PostgreSQL under concurrency: 8 OS processes upload overlapping labels, queue jobs for the same user at the same
instant and claim jobs, all at once. Afterwards no row is duplicated or lost, every change of a label is reported
once with its true old label, each job was claimed exactly once, and one user never had two pending jobs.

A job claim skips rows other workers hold (``FOR UPDATE SKIP LOCKED``) instead of waiting for them.
"""
from __future__ import annotations

import multiprocessing
import random
import traceback
from collections import Counter, defaultdict

import pytest
from sqlalchemy import func, text, update
from sqlmodel import Session, select

from localize.db.models import Job, JobState, Label, Text, User
from localize.db.session import make_engine, session_scope
from localize.errors import ConflictError
from localize.labels_io import LabelRow
from localize.runtime import Runtime
from localize.services import job_runs
from localize.services import jobs as job_service
from localize.services.labels import upsert_labels
from localize.services.tasks import create_task, get_task
from localize.services.users import create_user, get_user
from localize.training_args import TrainingArguments

PROCESSES = 8
ROUNDS = 4
LABELS = ["a", "b", "c"]
LABELLERS = ["u0", "u1", "u2"]
TEXTS = [f"shared text number {i}" for i in range(40)]
QUEUED_USERS = [f"q{i}" for i in range(40)]  # one queued job each before the processes start
ARGS = TrainingArguments(method="head", max_epochs=1)


@pytest.fixture
def database_backend() -> str:
    return "postgresql"


def _finish(session: Session, job_id: int, worker_id: str) -> None:
    session.exec(update(Job).where(Job.id == job_id, Job.worker_id == worker_id, Job.state == JobState.RUNNING)
                 .values(state=JobState.SUCCEEDED, finished_at=func.now()))
    session.commit()


def _claim_and_finish(engine, worker_id: str, limit: int | None) -> list[int]:  # noqa: ANN001
    claimed = []
    while limit is None or len(claimed) < limit:
        with session_scope(engine) as session:
            job_id = job_runs.claim_next_job(session=session, worker_id=worker_id)
            if job_id is None:
                break
            _finish(session, job_id, worker_id)
        claimed.append(job_id)
    return claimed


def _contend(url: str, index: int, barrier, results) -> None:  # noqa: ANN001
    """One of the 8 processes: each round it uploads every shared text (in its own order, with its own labels),
    claims two jobs, then queues a job for the round's user at the same instant as every other process."""
    worker_id = f"p{index}"
    out = {"index": index, "accepted": 0, "created": 0, "changes": [], "claimed": [], "queued": [], "conflicts": 0,
           "error": None}
    engine = make_engine(url)
    rng = random.Random(index)
    try:
        for round_ in range(ROUNDS):
            rows = [LabelRow(line=j + 1, user=LABELLERS[(index + j + round_) % len(LABELLERS)], text=text_,
                             label=rng.choice(LABELS)) for j, text_ in enumerate(TEXTS)]
            rng.shuffle(rows)  # different orders provoke lock waits (and deadlocks, which are retried)
            barrier.wait(timeout=120)
            with session_scope(engine) as session:
                report = upsert_labels(session=session, task=get_task(session=session, name="contend"), rows=rows)
            assert not report.errors, report.errors
            out["accepted"] += report.accepted
            out["created"] += report.created
            out["changes"] += [(c.user, c.text, c.old_label, c.new_label) for c in report.updated]
            out["claimed"] += _claim_and_finish(engine, worker_id, limit=2)

            barrier.wait(timeout=120)
            with session_scope(engine) as session:
                task = get_task(session=session, name="contend")
                user = get_user(session=session, name=f"r{round_}")
                try:
                    out["queued"].append(job_service.queue_training(session=session, task=task, user=user,
                                                                    args=ARGS).id)
                except ConflictError:
                    out["conflicts"] += 1
        barrier.wait(timeout=120)
        out["claimed"] += _claim_and_finish(engine, worker_id, limit=None)
    except BaseException:  # noqa: BLE001  (reported to the test, which fails with it)
        out["error"] = traceback.format_exc()
        barrier.abort()
    finally:
        engine.dispose()
        results.put(out)


def _seed(runtime: Runtime) -> list[int]:
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="contend", labels=LABELS)
        for round_ in range(ROUNDS):
            create_user(session=session, name=f"r{round_}")
        jobs = []
        for name in QUEUED_USERS:
            user = create_user(session=session, name=name)
            jobs.append(job_service.queue_training(session=session, task=task, user=user, args=ARGS).id)
        return jobs


def _history_is_consistent(changes: list[tuple[str, str]], final: str) -> bool:
    """Whether the reported changes of one label chain into a single serial history ending at ``final``: an
    Euler path over the edges old -> new that ends at ``final``. A lost update or a change reported twice breaks
    this (two changes from the same old label, or one that ends elsewhere)."""
    balance = Counter()
    for old, new in changes:
        balance[old] -= 1
        balance[new] += 1
    if balance[final] == 0:
        return all(value == 0 for value in balance.values())
    starts = [label for label, value in balance.items() if value == -1]
    return balance[final] == 1 and len(starts) == 1 and all(value in (-1, 0, 1) for value in balance.values())


@pytest.mark.timeout(300)
def test_eight_processes_upload_labels_and_claim_jobs_at_once(runtime: Runtime) -> None:
    seeded_jobs = _seed(runtime)
    url = runtime.settings.resolved_database_url
    # Fresh OS processes, each with its own connections, as on separate machines. forkserver rather than spawn: a
    # clean single-threaded server imports localize (torch included) once and forks the 8 workers from it, where
    # spawn would import it 8 times; like spawn, nothing of this test process (connections, threads) is inherited.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [context.Process(target=_contend, args=(url, i, barrier, results)) for i in range(PROCESSES)]
    for process in processes:
        process.start()
    outs = [results.get(timeout=280) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    errors = [out["error"] for out in outs if out["error"]]
    assert not errors, "\n".join(errors)
    assert all(process.exitcode == 0 for process in processes)

    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="contend")
        labels = session.exec(select(User.name, Text.body, Label.label).join(User, User.id == Label.user_id)
                              .join(Text, Text.id == Label.text_id).where(Label.task_id == task.id)).all()
        n_texts = session.exec(select(func.count()).select_from(Text)).one()
        labellers = session.exec(select(func.count()).select_from(User).where(User.name.in_(LABELLERS))).one()
        jobs = session.exec(select(Job)).all()
        users = {user.id: user.name for user in session.exec(select(User))}

    # Labels: one row per (user, text) uploaded, none lost, none doubled; each row created by exactly one process.
    uploaded = {(LABELLERS[(i + j + r) % len(LABELLERS)], text_) for i in range(PROCESSES) for r in range(ROUNDS)
                for j, text_ in enumerate(TEXTS)}
    stored = Counter((user, body) for user, body, _ in labels)
    assert set(stored) == uploaded and set(stored.values()) == {1}
    assert sum(out["created"] for out in outs) == len(uploaded)
    assert sum(out["accepted"] for out in outs) == PROCESSES * ROUNDS * len(TEXTS)
    assert (n_texts, labellers) == (len(TEXTS), len(LABELLERS))
    # Every reported change names the label it really replaced: the changes of a row form one serial history.
    changes = defaultdict(list)
    for out in outs:
        for user, text_, old, new in out["changes"]:
            changes[(user, text_)].append((old, new))
    final = {(user, body): label for user, body, label in labels}
    broken = {key: history for key, history in changes.items() if not _history_is_consistent(history, final[key])}
    assert not broken

    # Jobs: each claimed by exactly one process, once; per round exactly one of 8 simultaneous queue calls won.
    claimed = [job_id for out in outs for job_id in out["claimed"]]
    assert len(claimed) == len(set(claimed))
    assert set(claimed) == {job.id for job in jobs}
    owner = {job_id: f"p{out['index']}" for out in outs for job_id in out["claimed"]}
    assert all(job.state == JobState.SUCCEEDED and job.attempts == 1 and job.worker_id == owner[job.id]
               for job in jobs)
    assert set(seeded_jobs) <= set(claimed)
    queued = [job_id for out in outs for job_id in out["queued"]]
    assert len(queued) == ROUNDS and sum(out["conflicts"] for out in outs) == ROUNDS * (PROCESSES - 1)
    per_round_user = Counter(users[job.user_id] for job in jobs if users[job.user_id].startswith("r"))
    assert per_round_user == {f"r{round_}": 1 for round_ in range(ROUNDS)}


def test_a_claim_skips_jobs_another_worker_holds_locked(runtime: Runtime) -> None:
    """While one transaction holds the oldest queued job locked, a claim takes the next one at once instead of
    waiting (a claim that waited would hit the lock timeout)."""
    first, second = _seed(runtime)[:2]
    with runtime.database.connect() as holder:
        holder.execute(text("BEGIN"))
        assert holder.execute(text("SELECT id FROM job WHERE id = :id FOR UPDATE"), {"id": first}).scalar() == first
        with session_scope(runtime.database) as session:
            session.exec(text("SET LOCAL lock_timeout = '2s'"))
            assert job_runs.claim_next_job(session=session, worker_id="b") == second
        holder.execute(text("ROLLBACK"))
    with session_scope(runtime.database) as session:
        assert job_runs.claim_next_job(session=session, worker_id="c") == first
        assert session.get(Job, first).worker_id == "c" and session.get(Job, second).worker_id == "b"
