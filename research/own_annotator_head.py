"""Whether a user's MAP head should be pulled toward their own annotator head from the task prior (the shared head
plus the offset the prior learnt for that annotator) rather than toward the shared head alone, on one prior trained
on every train row; scored on the users' test rows.

    python research/own_annotator_head.py --data ../shared/data/hs_brexit --last-epoch 4

Status: not adopted (reports/findings.md, round 10).
"""
from __future__ import annotations

import argparse
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
    parser.add_argument("--last-epoch", type=int, required=True, help="the prior's last epoch")
    options = parser.parse_args()
    data, base, cache = load_eval_data(options.data), get_base_model(), ActivationCache(max_bytes=4 << 30)
    args = TrainingArguments(prior_last_epoch=options.last_epoch)
    rows = data.train
    trainer = Trainer(base, args.for_prior(), [r.text for r in rows], [r.label for r in rows], data.labels,
                      cache=cache, annotators=[r.user for r in rows])
    prior = trainer.train()
    index = {name: i for i, name in enumerate(sorted({r.user for r in rows}))}
    shared = {k: v.detach() for k, v in trainer.head.items()}
    offsets = {k: v.detach() for k, v in trainer.annotator_offsets.items()}
    texts = sorted({r.text for r in data.train} | {r.text for r in data.test})
    encoded = dict(zip(texts, cache.encoded(base, prior, texts, batch_size=128)))

    def xy(some):  # noqa: ANN001, ANN202
        return (torch.stack([encoded[r.text] for r in some]),
                torch.tensor([data.labels.index(r.label) for r in some]))

    results: dict[str, list[tuple[float, float]]] = {}
    for user in data.users:
        if len(data.rows(user, "train")) < 80 or len(data.rows(user, "test")) < 15:
            continue
        x, y = xy(data.rows(user, "train"))
        test_x, test_y = xy(data.rows(user, "test"))
        counts = np.bincount(y.numpy(), minlength=len(data.labels)).astype(float)
        weights = torch.tensor(class_weights_for(counts, args.class_weighting), dtype=torch.float32)
        own = {k: shared[k] + offsets[k][index[user]] for k in shared}
        for name, center in (("the shared head (the product)", shared), ("the user's own annotator head", own)):
            weight, bias = solve_map_head(x, y, center, strength=args.head_prior_strength, class_weights=weights)
            predicted = (test_x @ weight.T + bias).argmax(1).numpy()
            results.setdefault(name, []).append(user_metrics(test_y.numpy(), predicted))
    for name, scores in results.items():
        accuracy, macro_f1 = np.array(scores).mean(0)
        print(f"pulled toward {name}: {len(scores)} users, accuracy {accuracy:.3f}, macro-F1 {macro_f1:.3f}")


if __name__ == "__main__":
    main()
