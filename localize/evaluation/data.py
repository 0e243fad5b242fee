"""An evaluation data set: per-user labels with a given item-level train/test split (the shared-data layout).

A folder holds ``train.jsonl`` and ``test.jsonl`` in the label-file format (``user``, ``item``, ``text``,
``label``, ``split``). Users count when they have at least ``min_train`` train and ``min_test`` test rows.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from localize.errors import ValidationError
from localize.labels_io import LabelRow, infer_label_set, read_label_file


def load_split(data_dir: Path, name: str) -> list[LabelRow]:
    path = Path(data_dir) / f"{name}.jsonl"
    if not path.is_file():
        raise ValidationError(f"{str(path)!r} does not exist; an eval folder holds train.jsonl and test.jsonl")
    parsed = read_label_file(path, max_text_chars=100_000)
    if parsed.errors:
        first = parsed.errors[0]
        raise ValidationError(f"{path.name} has {len(parsed.errors)} bad row(s); line {first.line}: {first.message}")
    if not parsed.rows:
        raise ValidationError(f"{str(path)!r} has no rows")
    return parsed.rows


def qualifying_users(train: list[LabelRow], test: list[LabelRow], min_train: int, min_test: int) -> list[str]:
    train_counts, test_counts = Counter(r.user for r in train), Counter(r.user for r in test)
    return sorted(u for u in train_counts if train_counts[u] >= min_train and test_counts[u] >= min_test)


def item_key(row: LabelRow) -> str:
    """The item a row labels: its ``item`` id, or its text where the file gives none."""
    return row.item if row.item else row.text


@dataclass
class EvalData:
    """Train and test rows of every user (qualifying or not: pooled methods learn from all train rows)."""

    name: str
    train: list[LabelRow]
    test: list[LabelRow]
    labels: list[str]
    users: list[str]  # the users scored
    _by_user: dict[tuple[str, str], list[LabelRow]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        grouped: dict[tuple[str, str], list[LabelRow]] = defaultdict(list)
        for split, rows in (("train", self.train), ("test", self.test)):
            for row in rows:
                grouped[(row.user, split)].append(row)
        self._by_user = dict(grouped)
        overlap = {item_key(r) for r in self.train} & {item_key(r) for r in self.test}
        if overlap:
            example = sorted(overlap)[0]
            raise ValidationError(f"the split must be by item, but {len(overlap)} item(s) are in both train and test "
                                  f"of {self.name!r}, e.g. {example[:60]!r}")

    def rows(self, user: str, split: str) -> list[LabelRow]:
        return self._by_user.get((user, split), [])

    def label_index(self, rows: list[LabelRow]) -> list[int]:
        return [self.labels.index(r.label) for r in rows]

    def with_train_limit(self, limit: int, seed: int = 0) -> EvalData:
        """The same data with each scored user's train rows cut to a random ``limit`` (a learning-curve point);
        other users' rows, and every test row, stay."""
        import random

        scored, kept = set(self.users), []
        for user in self.users:
            rows = self.rows(user, "train")
            kept.extend(rows if len(rows) <= limit else random.Random(f"{seed}:{user}").sample(rows, limit))
        kept.extend(r for r in self.train if r.user not in scored)
        return EvalData(name=self.name, train=kept, test=self.test, labels=self.labels, users=self.users)


def select_users(
    train: list, test: list, *, data_dir: Path, users: list[str] | None, min_train: int, min_test: int
) -> list[str]:
    """The protocol's users (>= ``min_train`` train and >= ``min_test`` test rows), or the named ones if all qualify."""
    eligible = qualifying_users(train, test, min_train, min_test)
    if users:
        unknown = sorted(set(users) - set(eligible))
        if unknown:
            raise ValidationError(f"user(s) {unknown} are not in the data or have fewer than {min_train} train / "
                                  f"{min_test} test rows in {str(data_dir)!r}")
        eligible = sorted(set(users))
    if not eligible:
        raise ValidationError(f"no user has >= {min_train} train and >= {min_test} test rows in {str(data_dir)!r}")
    return eligible


def load_eval_data(
    data_dir: Path, *, min_train: int = 80, min_test: int = 15, users: list[str] | None = None
) -> EvalData:
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValidationError(f"eval data folder {str(data_dir)!r} does not exist")
    train, test = load_split(data_dir, "train"), load_split(data_dir, "test")
    eligible = select_users(train, test, data_dir=data_dir, users=users, min_train=min_train, min_test=min_test)
    return EvalData(name=data_dir.resolve().name, train=train, test=test, labels=infer_label_set(train + test),
                    users=eligible)
