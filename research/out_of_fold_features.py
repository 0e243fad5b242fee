"""Whether users' MAP heads should be fitted on out-of-fold encodings of their train texts: the task prior has seen
those very texts with these very users' labels, so their encodings are more separable than any new text's, and a head
fitted on them may lean on directions that do not carry over. Trains the production prior on every train row and
``--folds`` priors each without one fold of the texts (same seed and epochs), then fits each user's MAP head on
(a) the full prior's encodings (the product), (b) each text encoded by the prior that never saw it, and scores both
on the full prior's encodings of the test rows. A third line serves the fold priors as an ensemble (each with heads
on its own encodings; probabilities averaged), for reference only: it would cost ``--folds`` prior passes per text.

    python research/out_of_fold_features.py --data ../shared/data/hs_brexit --last-epoch 4

Status: not adopted (reports/findings.md, round 14): the gain of one seed on HS-Brexit did not repeat.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.evaluation.harness import user_metrics
from localize.map_head import class_weights_for, solve_map_head
from localize.training import Trainer
from localize.training_args import TrainingArguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--last-epoch", type=int, required=True, help="every prior's last epoch")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    data, base, cache = load_eval_data(options.data), get_base_model(), ActivationCache(max_bytes=4 << 30)
    args = TrainingArguments(prior_last_epoch=options.last_epoch, seed=options.seed)
    rows = data.train
    train_texts = sorted({r.text for r in rows})
    random.Random(options.seed).shuffle(train_texts)
    fold_of = {text: i % options.folds for i, text in enumerate(train_texts)}
    test_texts = sorted({r.text for r in data.test})

    def prior_on(some):  # noqa: ANN001, ANN202
        trainer = Trainer(base, args.for_prior(), [r.text for r in some], [r.label for r in some], data.labels,
                          cache=cache, annotators=[r.user for r in some])
        return trainer.train(), {k: v.detach() for k, v in trainer.head.items()}

    def encode(prior, texts):  # noqa: ANN001, ANN202
        return dict(zip(texts, cache.encoded(base, prior, texts, batch_size=128)))

    full_prior, full_head = prior_on(rows)
    full = encode(full_prior, train_texts + test_texts)
    out_of_fold: dict[str, torch.Tensor] = {}
    folds = []
    for k in range(options.folds):
        prior, head = prior_on([r for r in rows if fold_of[r.text] != k])
        encoded = encode(prior, train_texts + test_texts)
        out_of_fold.update({t: encoded[t] for t in train_texts if fold_of[t] == k})
        folds.append((encoded, head))

    results: dict[str, list[tuple[float, float]]] = {}
    for user in data.users:
        train, test = data.rows(user, "train"), data.rows(user, "test")
        if len(train) < 80 or len(test) < 15:
            continue
        y = torch.tensor([data.labels.index(r.label) for r in train])
        test_y = np.array([data.labels.index(r.label) for r in test])
        counts = np.bincount(y.numpy(), minlength=len(data.labels)).astype(float)
        weights = torch.tensor(class_weights_for(counts, args.class_weighting), dtype=torch.float32)

        def head_on(encoded, center):  # noqa: ANN001, ANN202
            x = torch.stack([encoded[r.text] for r in train]).float()
            return solve_map_head(x, y, center, strength=args.head_prior_strength, class_weights=weights)

        full_test = torch.stack([full[r.text] for r in test]).float()
        for name, encoded in (("heads on the full prior's encodings (the product)", full),
                              ("heads on out-of-fold encodings", out_of_fold)):
            weight, bias = head_on(encoded, full_head)
            predicted = (full_test @ weight.T + bias).argmax(1).numpy()
            results.setdefault(name, []).append(user_metrics(test_y, predicted))
        probabilities = 0
        for encoded, head in folds:
            weight, bias = head_on(encoded, head)
            fold_test = torch.stack([encoded[r.text] for r in test]).float()
            probabilities = probabilities + (fold_test @ weight.T + bias).softmax(1)
        results.setdefault("the fold priors as an ensemble (reference)", []).append(
            user_metrics(test_y, probabilities.argmax(1).numpy()))
    for name, scores in results.items():
        accuracy, macro_f1 = np.array(scores).mean(0)
        print(f"{name}: {len(scores)} users, accuracy {accuracy:.3f}, macro-F1 {macro_f1:.3f}")


if __name__ == "__main__":
    main()
