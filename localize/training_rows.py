"""A trainer's rows: one per distinct text (its label shares kept, and for a task prior each annotator's label), the
validation rows held out (by the text's hash, so a task prior and every user of it hold out the same texts, or
stratified by seed), and each epoch's batches grouped by length. :class:`Split` is one side of that division, with
its texts' inputs for the model and the targets its loss compares with."""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from localize.training_args import TrainingArguments


@dataclass
class Split:
    texts: list[str]
    targets: torch.Tensor  # [rows]: the label index (the most frequent one where a text has several)
    soft: torch.Tensor | None = None  # [rows, labels]: each label's share, where texts were merged
    inputs: list[torch.Tensor] | None = None  # per row: the frozen start-layer input, or the pooled encoding
    input_ids: list[torch.Tensor] | None = None  # token ids per row, for methods that change the embeddings


def row_lengths(split: Split) -> list[int] | None:
    """Tokens per row of a split whose rows run encoder layers; None for pooled rows (nothing to pad)."""
    if split.input_ids is not None:
        return [len(ids) for ids in split.input_ids]
    if split.inputs and split.inputs[0].dim() == 2:  # [tokens, hidden] per row (pooled rows are 1-D)
        return [row.shape[0] for row in split.inputs]
    return None


def loss_targets(split: Split, batch: list[int] | slice) -> torch.Tensor:
    """What the loss compares the batch's logits with: the label shares where texts were merged, else the labels."""
    return split.soft[batch] if split.soft is not None else split.targets[batch]


def concat_splits(first: Split, second: Split | None) -> Split:
    """The rows of both splits, in one."""
    if second is None:
        return first

    def join(a, b):  # noqa: ANN001, ANN202
        if a is None or b is None:
            return None
        return torch.cat([a, b]) if isinstance(a, torch.Tensor) else a + b

    return Split(texts=first.texts + second.texts, targets=torch.cat([first.targets, second.targets]),
                  soft=join(first.soft, second.soft), inputs=join(first.inputs, second.inputs),
                  input_ids=join(first.input_ids, second.input_ids))


def held_out_text(text: str, fraction: float) -> bool:
    """Whether a ``by_text`` split holds ``text`` out for validation: a fixed function of the text alone (no seed),
    so every trainer of a task, prior and users alike, holds out the same texts."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=b"localize-val").digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


def shuffled_by_class(targets: list[int], seed: int) -> list[list[int]]:
    """Row indexes grouped by target (classes in order of first appearance), each group shuffled by ``seed``: the
    draw a stratified validation split takes its rows from."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(target, []).append(index)
    for members in by_class.values():
        rng.shuffle(members)
    return list(by_class.values())


def merge_duplicates(texts: list[str], targets: list[int], num_labels: int) -> tuple[list[str], list[int], list[list[float]]]:
    """One row per distinct text: its most frequent label (ties: the lower index) and each label's share."""
    counts: dict[str, list[int]] = {}
    for text, target in zip(texts, targets):
        counts.setdefault(text, [0] * num_labels)[target] += 1
    merged = list(counts)
    hard = [max(range(num_labels), key=lambda k: (counts[t][k], -k)) for t in merged]
    soft = [[c / sum(counts[t]) for c in counts[t]] for t in merged]
    return merged, hard, soft


def annotations_by_text(texts: list[str], annotators: list[str], targets: list[int],
                        ) -> tuple[dict[str, list[tuple[int, int]]], int]:
    """Per text, (annotator index, label index) of every label it was given, annotators indexed by sorted name; and
    how many annotators there are."""
    index = {name: i for i, name in enumerate(sorted(set(annotators)))}
    annotations: dict[str, list[tuple[int, int]]] = {}
    for text, name, target in zip(texts, annotators, targets):
        annotations.setdefault(text, []).append((index[name], target))
    return annotations, len(index)


def epoch_batches(split: Split, size: int, rng: random.Random) -> list[list[int]]:
    """One epoch's batches of ``size`` rows in random order. Rows that run encoder layers are grouped by length
    within windows of 50 batches (as transformers' ``group_by_length``), so little time goes to padding."""
    order = list(range(len(split.texts)))
    rng.shuffle(order)
    lengths = row_lengths(split)
    if lengths is not None:
        window = 50 * size
        order = [i for start in range(0, len(order), window)
                 for i in sorted(order[start : start + window], key=lengths.__getitem__)]
    batches = [order[start : start + size] for start in range(0, len(order), size)]
    rng.shuffle(batches)
    return batches


def validation_indexes(texts: list[str], targets: list[int], args: TrainingArguments) -> tuple[list[int], list[int]]:
    """``(train rows, validation rows)`` by index: ``args.validation_split`` decides which (by the text's hash, or
    each class's share drawn by seed), and too few rows to validate on leaves every row to training."""
    rows = len(texts)
    n_val = int(round(rows * args.validation_fraction))
    if n_val < args.min_validation_rows or rows - n_val < 2:
        return list(range(rows)), []
    if args.validation_split == "by_text":
        val = {i for i, text in enumerate(texts) if held_out_text(text, args.validation_fraction)}
        # A class whose every row would be held out trains on them instead: a model must see each class.
        trained = {targets[i] for i in range(rows) if i not in val}
        val = sorted(i for i in val if targets[i] in trained)
        if len(val) < args.min_validation_rows or rows - len(val) < 2:
            return list(range(rows)), []
        held = set(val)
        return [i for i in range(rows) if i not in held], val
    # Stratified: each class gives its share of validation rows, at least one where it has two or more.
    val: list[int] = []
    for members in shuffled_by_class(targets, args.seed):
        take = int(round(len(members) * args.validation_fraction))
        if len(members) >= 2:
            take = max(1, take)
        val.extend(members[: min(take, len(members) - 1)])
    val_set = set(val)
    return [i for i in range(rows) if i not in val_set], sorted(val)
