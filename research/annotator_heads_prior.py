"""Research script: a task prior trained with one head per annotator beside the crowd head.

The default prior learns each train text's label shares. Here the same prior (the default recipe's LoRA on the top
two layers, through the production Trainer) also learns every annotator's own label: annotator ``a``'s logits are
the pooled encoding times (the shared head + a per-annotator offset, zero at the start), summed into the loss with
``--weight``. Users then train the default recipe's heads on that encoding, starting from the shared head or from
their own annotator head. Scores the protocol of ``localize eval`` (mean per-user accuracy / macro-F1). Usage:

    python research/annotator_heads_prior.py --data ../shared/data/hs_brexit \\
        --variant class_weighting=sqrt,learning_rate=0.001
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from localize.activations import ActivationCache, pad_hidden
from localize.base_model import get_base_model
from localize.engine import forward_logits
from localize.evaluation.data import load_eval_data
from localize.evaluation.harness import user_metrics
from localize.training import Trainer
from localize.training_args import TrainingArguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--weight", type=float, default=1.0, help="weight of the annotator heads' loss")
    parser.add_argument("--variant", action="append", default=[], help="k=v[,k=v] of the users' arguments")
    options = parser.parse_args()
    data = load_eval_data(options.data)
    base = get_base_model()
    cache = ActivationCache(max_bytes=12 << 30)
    annotators = {user: i for i, user in enumerate(sorted({r.user for r in data.train}))}
    labels_by_text: dict[str, list[tuple[int, int]]] = {}
    for row in data.train:
        labels_by_text.setdefault(row.text, []).append((annotators[row.user], data.labels.index(row.label)))
    hidden, n_labels = base.dims.hidden_size, len(data.labels)
    offsets = {"weight": torch.zeros(len(annotators), n_labels, hidden), "bias": torch.zeros(len(annotators), n_labels)}

    class AnnotatorHeadsTrainer(Trainer):
        def _fit(self) -> None:  # the offsets train beside the method's parameters and the shared head
            self.head.update({"offset_weight": offsets["weight"], "offset_bias": offsets["bias"]})
            try:
                super()._fit()
            finally:
                del self.head["offset_weight"], self.head["offset_bias"]

        def _logits(self, split, batch, *, training):  # noqa: ANN001, ANN202
            shared = {"weight": self.head["weight"], "bias": self.head["bias"]}
            head, self.head = self.head, shared
            try:
                return super()._logits(split, batch, training=training)
            finally:
                self.head = head

        def _epoch(self, split, optimizer, accelerator, class_weights, rng) -> float:  # noqa: ANN001
            identity = {"weight": torch.eye(hidden), "bias": torch.zeros(hidden)}
            total = 0.0
            for batch in self._batches(split, rng):
                start, mask = pad_hidden([split.inputs[i] for i in batch])
                pooled = forward_logits(self.base, self.method, self.params, identity, start, mask, training=True,
                                        pooled_dropout=self.args.pooled_dropout)
                weight, bias = self.head["weight"], self.head["bias"]
                loss = F.cross_entropy(pooled @ weight.T + bias, self._loss_targets(split, batch), weight=class_weights)
                pairs = [(k, a, y) for k, i in enumerate(batch) for a, y in labels_by_text[split.texts[i]]]
                rows, who, targets = (torch.tensor(column) for column in zip(*pairs))
                own = torch.einsum("nh,nlh->nl", pooled[rows], weight + self.head["offset_weight"][who])
                loss = loss + options.weight * F.cross_entropy(own + bias + self.head["offset_bias"][who], targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(batch)
            return total / max(1, len(split.texts))

    started = time.perf_counter()
    prior = AnnotatorHeadsTrainer(base, TrainingArguments().for_prior(), [r.text for r in data.train],
                                  [r.label for r in data.train], data.labels, cache=cache,
                                  progress=lambda f, m: print(f"{time.perf_counter() - started:.0f}s prior {m}",
                                                              flush=True)).train()
    variants = {"default": TrainingArguments()}
    for spec in options.variant:
        values = dict(pair.split("=", 1) for pair in spec.split(","))
        variants[spec] = dataclasses.replace(TrainingArguments(), **{
            k: float(v) if k == "learning_rate" else v for k, v in values.items()})
    for name, args in variants.items():
        for own_head in (False, True):
            accuracy, macro_f1 = [], []
            for user in data.users:
                init = prior
                if own_head:
                    a = annotators[user]
                    init = dataclasses.replace(prior, head={"weight": prior.head["weight"] + offsets["weight"][a],
                                                            "bias": prior.head["bias"] + offsets["bias"][a]})
                train, test = data.rows(user, "train"), data.rows(user, "test")
                trainer = Trainer(base, args, [r.text for r in train], [r.label for r in train], data.labels,
                                  init=init, cache=cache)
                trainer.train()
                scores = user_metrics(data.label_index(test),
                                      trainer.predict_proba([r.text for r in test]).numpy().argmax(1))
                accuracy.append(scores[0])
                macro_f1.append(scores[1])
            start = "own annotator head" if own_head else "shared head"
            print(f"{name}, starting from the {start}: accuracy {np.mean(accuracy):.4f}, "
                  f"macro-F1 {np.mean(macro_f1):.4f}", flush=True)


if __name__ == "__main__":
    main()
