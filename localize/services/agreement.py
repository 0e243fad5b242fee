"""How much a task's users agree: Krippendorff's alpha, each user against the crowd, and user x user.

The crowd of a text, for one user, is every *other* user who labelled it (leave-one-out), so a user's own label
never counts toward the majority it is compared with.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

from sqlmodel import Session, select

from localize.db.models import Label, Task, Text, User


def krippendorff_alpha_nominal(units: Mapping[Hashable, Iterable[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data: ``units`` maps each unit (text) to the values its coders gave.

    Units with fewer than two values are not pairable and are left out. Built from the coincidence matrix:
    ``alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k``. None when it is undefined (no pairable
    values, or every pairable value the same)."""
    coincidences: dict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for values in units.values():
        values = list(values)
        m = len(values)
        if m < 2:
            continue
        counts = Counter(values)
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                pairs = n_c * (n_c - 1) if c == k else n_c * n_k  # ordered pairs of distinct coders
                coincidences[(c, k)] += pairs / (m - 1)
    totals: dict[Hashable, float] = defaultdict(float)
    for (c, _), value in coincidences.items():
        totals[c] += value
    n = sum(totals.values())
    observed = sum(value for (c, k), value in coincidences.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    if n <= 1 or expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


def task_labels(*, session: Session, task: Task) -> dict[int, dict[int, str]]:
    """``{text id: {user id: label}}`` for every label of ``task``."""
    table: dict[int, dict[int, str]] = defaultdict(dict)
    for text_id, user_id, label in session.exec(
        select(Label.text_id, Label.user_id, Label.label).where(Label.task_id == task.id)
    ):
        table[text_id][user_id] = label
    return table


def crowd_majority(labels: Mapping[int, str], *, leave_out: int | None = None) -> str | None:
    """The most common label among ``labels`` (without ``leave_out``'s); None when there is none or a tie."""
    counts = Counter(label for user_id, label in labels.items() if user_id != leave_out).most_common(2)
    if not counts or (len(counts) == 2 and counts[0][1] == counts[1][1]):
        return None
    return counts[0][0]


@dataclass
class UserAgreement:
    user: str
    labels: int
    compared: int  # texts with a crowd majority (others labelled them, without a tie)
    agreement: float | None  # share of those where the user's label is the crowd's


@dataclass
class AgreementReport:
    alpha: float | None
    texts: int  # texts labelled by two or more users (the pairable units)
    users: list[UserAgreement]
    names: list[str]
    # pairwise[i][j]: share of texts both labelled where users i and j agree; None without a shared text
    pairwise: list[list[float | None]]
    shared: list[list[int]]


def agreement_report(*, session: Session, task: Task) -> AgreementReport:
    table = task_labels(session=session, task=task)
    user_ids = sorted({user_id for labels in table.values() for user_id in labels})
    names = dict(session.exec(select(User.id, User.name).where(User.id.in_(user_ids))).all()) if user_ids else {}
    order = sorted(user_ids, key=lambda user_id: names[user_id])
    per_user = []
    for user_id in order:
        mine = [(labels[user_id], crowd_majority(labels, leave_out=user_id))
                for labels in table.values() if user_id in labels]
        compared = [(own, crowd) for own, crowd in mine if crowd is not None]
        per_user.append(UserAgreement(user=names[user_id], labels=len(mine), compared=len(compared),
                                      agreement=sum(own == crowd for own, crowd in compared) / len(compared)
                                      if compared else None))
    index = {user_id: i for i, user_id in enumerate(order)}
    agree = [[0] * len(order) for _ in order]
    shared = [[0] * len(order) for _ in order]
    for labels in table.values():
        for a, label_a in labels.items():
            for b, label_b in labels.items():
                shared[index[a]][index[b]] += 1
                agree[index[a]][index[b]] += label_a == label_b
    pairwise = [[agree[i][j] / shared[i][j] if shared[i][j] else None for j in range(len(order))]
                for i in range(len(order))]
    return AgreementReport(
        alpha=krippendorff_alpha_nominal({text_id: labels.values() for text_id, labels in table.items()}),
        texts=sum(len(labels) >= 2 for labels in table.values()), users=per_user,
        names=[names[user_id] for user_id in order], pairwise=pairwise, shared=shared,
    )


@dataclass
class CrowdDifference:
    text: str
    mine: str
    crowd: str
    counts: dict[str, int]  # the other users' labels of the text


def differences_from_crowd(*, session: Session, task: Task, user: User, limit: int = 100) -> list[CrowdDifference]:
    """Texts where ``user``'s label differs from the majority of the other users who labelled them."""
    table = task_labels(session=session, task=task)
    found = []
    for text_id, labels in table.items():
        if user.id not in labels:
            continue
        crowd = crowd_majority(labels, leave_out=user.id)
        if crowd is not None and crowd != labels[user.id]:
            counts = Counter(label for user_id, label in labels.items() if user_id != user.id)
            found.append((text_id, labels[user.id], crowd, dict(counts)))
    found.sort(key=lambda entry: -max(entry[3].values()))  # the clearest majorities first
    found = found[:limit]
    bodies = dict(session.exec(select(Text.id, Text.body).where(Text.id.in_([f[0] for f in found]))).all()) if found else {}
    return [CrowdDifference(text=bodies[text_id], mine=mine, crowd=crowd, counts=counts)
            for text_id, mine, crowd, counts in found]
