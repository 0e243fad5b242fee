"""'Did you mean' for mistyped names, and pairs of labels so alike that one is likely a typo of the other."""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` candidates that look like ``name`` mistyped (case differences count as close)."""
    pool = list(dict.fromkeys(candidates))
    by_lower = {candidate.lower(): candidate for candidate in pool}
    found = [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.75)]
    return [m for m in found if m != name]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` (or ``'x' or 'y'``), or ``""`` when nothing is close."""
    matches = close_matches(name, candidates)
    if not matches:
        return ""
    return "; did you mean " + " or ".join(repr(m) for m in matches) + "?"


def lookalike_pairs(names: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of distinct names within one small edit of each other (``postive`` and ``positive``), as typos in a
    label set look. A name that is the other with whole words added (``not_offensive`` beside ``offensive``,
    ``very positive`` beside ``positive``) is a label of its own, not a typo."""
    unique = sorted(dict.fromkeys(names))
    pairs = []
    for i, first in enumerate(unique):
        for second in unique[i + 1:]:
            a, b = first.lower(), second.lower()
            if a == b or (not _adds_words(a, b) and difflib.SequenceMatcher(None, a, b).ratio() >= 0.8):
                pairs.append((first, second))
    return pairs


def _adds_words(a: str, b: str) -> bool:
    """Whether one name's words (split on anything but letters and digits) are the other's with some added."""
    words_a, words_b = set(re.findall(r"[^\W_]+", a)), set(re.findall(r"[^\W_]+", b))
    return words_a != words_b and (words_a <= words_b or words_b <= words_a)
