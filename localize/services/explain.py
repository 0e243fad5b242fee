"""Which words drove a user's answer: occlusion attribution through the engine.

Each word (a run of non-space characters) is removed in turn and the text re-classified; a word's weight is how
much the predicted label's probability falls without it (negative: the word argued against the label). All the
occluded variants go through the engine as one batch, with the same adapter that answered. A long text is
attributed in spans of adjacent words, so a request costs at most ``max_units + 1`` rows.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlmodel import Session

from localize.db.models import Task, User
from localize.runtime import Runtime
from localize.services import adapters as adapter_service
from localize.services.predictions import PredictionRequest, check_texts, forward, predict

MAX_UNITS = 64
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class TokenWeight:
    token: str  # the word (or span of words) as it appears in the text
    start: int  # character offsets into the text
    end: int
    weight: float  # fall in the predicted label's probability when the token is removed


@dataclass
class Answer:
    label: str
    probabilities: dict[str, float]
    version: int
    source: str  # "user" or "prior"
    abstain: bool = False  # below the confidence at which this version's validation rows reach the task's target
    threshold: float | None = None


@dataclass
class Explanation:
    text: str
    answer: Answer
    tokens: list[TokenWeight]
    prior: Answer | None  # the task prior's (the crowd's) answer beside the user's


def word_spans(text: str, max_units: int = MAX_UNITS) -> list[tuple[int, int]]:
    """Character spans of the words of ``text``, merged into at most ``max_units`` spans of adjacent words."""
    words = [(match.start(), match.end()) for match in _WORD.finditer(text)]
    if len(words) <= max_units:
        return words
    per_unit = -(-len(words) // max_units)
    return [(words[i][0], words[min(i + per_unit, len(words)) - 1][1]) for i in range(0, len(words), per_unit)]


def remove_spans(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` without the given spans, with the gaps they leave closed to single spaces."""
    kept, cursor = [], 0
    for start, end in sorted(spans):
        kept.append(text[cursor:start])
        cursor = end
    kept.append(text[cursor:])
    return " ".join("".join(kept).split())


def occlusion(
    text: str, classify: Callable[[list[str]], list[dict[str, float]]], *, max_units: int = MAX_UNITS
) -> tuple[str, dict[str, float], list[TokenWeight]]:
    """The predicted label, its probabilities and each word's weight; ``classify`` maps texts to probabilities
    in one batched call."""
    spans = word_spans(text, max_units)
    variants = [text] + [remove_spans(text, [span]) or " " for span in spans]
    outputs = classify(variants)
    probabilities = outputs[0]
    label = max(probabilities, key=probabilities.get)
    base = probabilities[label]
    tokens = [TokenWeight(token=text[start:end], start=start, end=end, weight=base - out.get(label, 0.0))
              for (start, end), out in zip(spans, outputs[1:])]
    return label, probabilities, tokens


def explain(
    *, session: Session, runtime: Runtime, task: Task, user: User, text: str, max_units: int = MAX_UNITS
) -> Explanation:
    """The user's answer for ``text`` with each word's attribution, and the task prior's answer beside it."""
    check_texts([text], max_chars=runtime.settings.max_text_chars, max_rows=1)
    row, source = adapter_service.serving_version(session=session, task=task, user=user,
                                                  allow_prior=runtime.settings.use_task_prior)

    def classify(texts: list[str]) -> list[dict[str, float]]:
        return [out.probabilities for out in forward(runtime=runtime, rows=[(row, t) for t in texts])]

    label, probabilities, tokens = occlusion(text, classify, max_units=max_units)
    # The answer itself as /predict gives it, abstention included.
    said = predict(session=session, runtime=runtime, requests=[PredictionRequest(user=user.name, task=task.name,
                                                                                 text=text)])[0]
    prior_answer = None
    prior = adapter_service.active_version(session=session, task=task, user=None)
    if prior is not None:
        output = forward(runtime=runtime, rows=[(prior, text)])[0]
        prior_answer = Answer(label=output.label, probabilities=output.probabilities,
                              version=output.version or prior.version, source="prior")
    return Explanation(text=text, answer=Answer(label=label, probabilities=probabilities, version=said.version,
                                                source=source, abstain=said.abstain, threshold=said.threshold),
                       tokens=tokens, prior=prior_answer)

