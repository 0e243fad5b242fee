"""What PyTorch's ordered CPU kernels cost a task prior's training: one epoch of the default recipe's prior on a data
set's train rows, with and without them, alternated in one process (the encodings cached first, so both time the
same work). Prints each epoch's seconds, the ratio of the sums, and whether the ordered runs agree to the last digit.

    python research/ordered_kernels_cost.py --data ../shared/data/hs_brexit --rounds 3

Status: current (docs/internals.md, "Reproducible training"; findings.md, round 14).
"""
from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path

import torch

import localize.training as training
from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.training import Trainer
from localize.training_args import TrainingArguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3, help="epochs timed each way, alternated")
    options = parser.parse_args()
    data, base, cache = load_eval_data(options.data), get_base_model(), ActivationCache(max_bytes=4 << 30)
    rows = data.train
    args = TrainingArguments(prior_last_epoch=1).for_prior()
    ordered = training.deterministic_kernels

    def epoch(with_order: bool) -> tuple[float, torch.Tensor]:
        training.deterministic_kernels = ordered if with_order else (lambda device: nullcontext())
        trainer = Trainer(base, args, [r.text for r in rows], [r.label for r in rows], data.labels, cache=cache,
                          annotators=[r.user for r in rows])
        trainer.prepare()
        started = time.perf_counter()
        trainer.fit()
        return time.perf_counter() - started, torch.cat([p.flatten() for p in trainer.params.values()])

    epoch(True)  # encodes the texts into the cache
    seconds: dict[bool, list[float]] = {True: [], False: []}
    weights: dict[bool, list[torch.Tensor]] = {True: [], False: []}
    for with_order in [False, True] * options.rounds:
        took, params = epoch(with_order)
        seconds[with_order].append(took)
        weights[with_order].append(params)
        print(f"{'ordered' if with_order else 'default'} kernels: one epoch {took:.1f} s", flush=True)
    print(f"ordered / default (sums of {options.rounds} epochs each): {sum(seconds[True]) / sum(seconds[False]):.3f}")
    for with_order in (True, False):
        same = all(torch.equal(weights[with_order][0], other) for other in weights[with_order][1:])
        print(f"{'ordered' if with_order else 'default'} kernels: every run's LoRA weights equal: {same}")


if __name__ == "__main__":
    main()
