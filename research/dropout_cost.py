"""Research script: what LoRA's dropout costs a task prior's training epoch, torch's CPU dropout against the one
LoRA now uses (``localize.adapters.dropout``: its mask drawn from numpy's PCG64).

Trains one epoch of the default recipe's task prior (its ``for_prior()`` arguments: LoRA on the top four layers,
annotator heads, ``mixed_precision=auto``) on the pooled rows of ``--texts`` distinct texts of a data set's train
split, alternating the two dropouts ``--repeats`` times in one process, and prints each epoch's seconds and the
median ratio. Usage:

    python research/dropout_cost.py --data ../shared/data/md_agreement --texts 1200 --repeats 2
"""
from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path

import localize.adapters.lora as lora
import torch
import torch.nn.functional as F
from localize.adapters.dropout import dropout as numpy_mask_dropout

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.training import Trainer
from localize.training_args import TrainingArguments


def torch_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    return F.dropout(x, p, training)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--texts", type=int, default=1200, help="distinct train texts (every label of each)")
    parser.add_argument("--repeats", type=int, default=2)
    options = parser.parse_args()
    data = load_eval_data(options.data)
    rows = data.train
    texts = sorted({r.text for r in rows})
    random.Random(0).shuffle(texts)
    keep = set(texts[: options.texts])
    rows = [r for r in rows if r.text in keep]
    base = get_base_model()
    cache = ActivationCache()
    args = dataclasses.replace(TrainingArguments().for_prior(), max_epochs=1, validation_fraction=0.0)
    seconds: dict[str, list[float]] = {"torch": [], "numpy mask": []}
    for _ in range(options.repeats):
        for name, function in (("torch", torch_dropout), ("numpy mask", numpy_mask_dropout)):
            lora.fast_dropout = function
            trainer = Trainer(base, args, [r.text for r in rows], [r.label for r in rows], data.labels,
                              cache=cache, annotators=[r.user for r in rows])
            trainer.prepare()  # encodes the frozen layers once (cached for the later runs): not timed
            started = time.perf_counter()
            trainer.fit()
            seconds[name].append(time.perf_counter() - started)
            print(f"{name:>10}: {seconds[name][-1]:.1f} s for one epoch of {len(trainer.train_split.texts):,} texts "
                  f"(train loss {trainer.history[0]['train_loss']:.4f})", flush=True)
    ratio = statistics.median(seconds["numpy mask"]) / statistics.median(seconds["torch"])
    print(f"median epoch: torch {statistics.median(seconds['torch']):.1f} s, numpy mask "
          f"{statistics.median(seconds['numpy mask']):.1f} s, ratio {ratio:.2f} ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
