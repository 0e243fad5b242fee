"""Constants and builders the service tests share (a module, so tests can import it)."""
from __future__ import annotations

from collections.abc import Sequence

from localize.labels_io import LabelRow
from localize.training_args import TrainingArguments

LABELS = ["personal", "work"]
# A linear head for five epochs: enough for the notes texts, and well under a second per adapter.
FAST = TrainingArguments(method="head", max_epochs=5, method_options={"hidden": 0})

_VENDORS = ["Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries", "Wayne Enterprises"]
_PLACES = ["the pizzeria", "grandma's house", "the cinema", "the beach bar", "the zoo", "the bakery"]
_WORK = [f"Invoice {100 + i} from {v} for office printer paper" for i, v in enumerate(_VENDORS)]
_WORK += [f"Quarterly VAT payment for the company, supplier {v}" for v in _VENDORS]
_HOME = [f"Dinner with my family at {p}" for p in _PLACES]
_HOME += [f"Birthday present for my sister, bought at {p}" for p in _PLACES]
# Interleaved, so every prefix holds both classes. John files them as they are; Jane the opposite way.
TEXTS = [text for pair in zip(_WORK, _HOME) for text in pair]
JOHN_LABELS = ["work", "personal"] * len(_WORK)
JANE_LABELS = ["personal", "work"] * len(_WORK)


def label_rows(user: str, texts: Sequence[str], labels: Sequence[str], *, first_line: int = 1) -> list[LabelRow]:
    return [LabelRow(line=first_line + i, user=user, text=t, label=l) for i, (t, l) in enumerate(zip(texts, labels))]
