"""Scoring trained adapters on a labelled file: each user's active adapter predicts that user's rows, and the
answers are compared with the labels (accuracy and macro-F1 per user, and their means over users)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from sqlmodel import Session

from localize.db.models import Task
from localize.labels_io import LabelRow, RowError
from localize.services import adapters as adapter_service
from localize.services.users import find_user

if TYPE_CHECKING:
    from localize.runtime import Runtime


@dataclass
class UserScore:
    user: str
    rows: int
    accuracy: float | None = None
    macro_f1: float | None = None
    version: int | None = None
    skipped: str | None = None  # why this user was not scored


@dataclass
class ScoreReport:
    task: str
    users: list[UserScore] = field(default_factory=list)
    rejected: list[RowError] = field(default_factory=list)

    @property
    def scored(self) -> list[UserScore]:
        return [u for u in self.users if u.skipped is None]

    @property
    def mean_accuracy(self) -> float | None:
        return sum(u.accuracy for u in self.scored) / len(self.scored) if self.scored else None

    @property
    def mean_macro_f1(self) -> float | None:
        return sum(u.macro_f1 for u in self.scored) / len(self.scored) if self.scored else None

    def to_dict(self) -> dict:
        return {"task": self.task, "users": [asdict(u) for u in self.users], "mean_accuracy": self.mean_accuracy,
                "mean_macro_f1": self.mean_macro_f1, "users_scored": len(self.scored),
                "rejected": [vars(e) for e in self.rejected]}


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over the labels in the truth or the predictions (as the evaluation scores
    users: a label nobody used and nothing predicted does not count)."""
    scores = []
    for label in sorted(set(truth) | set(predicted)):
        tp = sum(t == label and p == label for t, p in zip(truth, predicted))
        fp = sum(t != label and p == label for t, p in zip(truth, predicted))
        fn = sum(t == label and p != label for t, p in zip(truth, predicted))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def score_labels(
    *, session: Session, runtime: Runtime, task: Task, rows: Sequence[LabelRow], errors: Sequence[RowError] = (),
    users: Sequence[str] | None = None, progress: Callable[[int], None] | None = None,
) -> ScoreReport:
    """Scores each user's active adapter on that user's ``rows`` (only ``users``, when given). A row whose label is
    not one of the task's is rejected; a user without an active adapter is listed as skipped, with why.
    ``progress(n)`` is called as each batch of ``n`` rows is scored."""
    from localize.services.predictions import PredictionRequest, predict

    report = ScoreReport(task=task.name, rejected=list(errors))
    by_user: dict[str, list[LabelRow]] = {}
    for row in rows:
        if users is not None and row.user not in users:
            continue
        if row.label not in task.labels:
            report.rejected.append(RowError(line=row.line, message=f"label {row.label!r} is not one of task "
                                                                   f"{task.name!r}'s labels {task.labels}"))
            continue
        by_user.setdefault(row.user, []).append(row)
    for name in users or []:
        by_user.setdefault(name, [])
    chunk = runtime.settings.max_batch_rows
    for name in sorted(by_user):
        user_rows = by_user[name]
        user = find_user(session=session, name=name)
        active = adapter_service.active_version(session=session, task=task, user=user) if user else None
        if not user_rows:
            report.users.append(UserScore(user=name, rows=0, skipped="no labelled rows in the file"))
            continue
        if user is None or active is None:
            why = "no such user" if user is None else "no active adapter in the task"
            report.users.append(UserScore(user=name, rows=len(user_rows), skipped=why))
            continue
        predicted: list[str] = []
        for start in range(0, len(user_rows), chunk):
            requests = [PredictionRequest(user=name, task=task.name, text=row.text)
                        for row in user_rows[start:start + chunk]]
            predicted += [result.label for result in predict(session=session, runtime=runtime, requests=requests)]
            if progress is not None:
                progress(len(requests))
        truth = [row.label for row in user_rows]
        report.users.append(UserScore(
            user=name, rows=len(user_rows), version=active.version,
            accuracy=sum(t == p for t, p in zip(truth, predicted)) / len(truth), macro_f1=macro_f1(truth, predicted)))
    return report
