"""Where a user's head takes its class weights from, under active and random order: the active-learning
simulation (``localize.evaluation.active_learning``) with the head's square-root class weights computed from

- ``own``: the labels the user has revealed so far (the product's rule);
- ``task``: every other user's train labels (what the leave-this-user-out prior trained on);
- ``pool``: the prior's mean predicted label shares over the user's whole pool (labelled or not);
- ``oracle``: the user's own labels over their whole pool (a diagnostic: no product knows them).

Active order's picks are the texts the model is least sure of, so the labels it reveals are more balanced than the
user's pool: weights computed from them under-weight the minority label. The other sources do not depend on the
order. Every order is averaged over three seeds.

    python research/queue_class_weights.py --data ../shared/data/md_agreement --skip 24 --cache DIR

Prints, per source and order, the labels active order needs to reach random order's 200-label macro-F1 (random
order under the same source) and each curve's mean. Status: superseded (4 Dec): measured on frozen-base heads with
the even mix; see reports/findings.md, "Where the head's class weights come from" and round 12.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from localize.base_model import get_base_model
from localize.evaluation.active_learning import DEFAULT_SIZES, RANDOM_SEEDS, _Simulator, cached_encoder
from localize.evaluation.data import load_eval_data
from localize.map_head import class_weights_for, solve_map_head
from localize.training_args import TrainingArguments

SOURCES = ("own", "task", "pool", "oracle")


class _WeightedSimulator(_Simulator):
    """The product's simulator, its heads' class weights taken from ``counts`` when set."""

    counts: np.ndarray | None = None

    def _fit(self, x: torch.Tensor, y: torch.Tensor, center: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.counts is None:
            return super()._fit(x, y, center)
        weights = class_weights_for(self.counts, self.weighting)
        weight, bias = solve_map_head(x, y, center, strength=self.strength,
                                      class_weights=torch.tensor(weights, dtype=torch.float32))
        return {"weight": weight, "bias": bias}


def _counts(simulator: _WeightedSimulator, data, user: str, source: str, prior) -> np.ndarray | None:  # noqa: ANN001
    if source == "own":
        return None
    if source == "task":
        _, y = simulator._xy([r for r in data.train if r.user != user])
    elif source == "oracle":
        _, y = simulator._xy(data.rows(user, "train"))
    else:  # pool: the prior's expected label shares over the user's pool
        x, _ = simulator._xy(data.rows(user, "train"))
        return simulator._proba(prior, x).sum(0)
    return np.bincount(y.numpy(), minlength=simulator.num_labels).astype(float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--skip", type=int, default=24, help="eligible users to leave out (the report's first 24)")
    parser.add_argument("--users", type=int, default=None, help="only the first N of the users left")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--sources", default=",".join(SOURCES))
    options = parser.parse_args()
    torch.set_num_threads(1)
    data = load_eval_data(options.data)
    args = TrainingArguments()
    simulator = _WeightedSimulator(data, cached_encoder(get_base_model(), options.cache),
                                   strength=args.head_prior_strength, weighting=args.class_weighting)
    users = [u for u in data.users if len(data.rows(u, "train")) >= max(DEFAULT_SIZES)][options.skip:]
    users = users[: options.users] if options.users else users
    sources = options.sources.split(",")
    curves = {(s, order): [] for s in sources for order in ("random", "active")}
    for user in users:
        simulator.counts = None
        prior = simulator.prior_without(user)
        for source in sources:
            simulator.counts = _counts(simulator, data, user, source, prior)
            for order in ("random", "active"):
                runs = [simulator.curve(user, DEFAULT_SIZES, order, seed, prior) for seed in RANDOM_SEEDS]
                curves[source, order].append(np.mean([[f1 for _, f1 in run] for run in runs], 0))
    for source in sources:
        random_mean, active_mean = (np.mean(curves[source, order], 0) for order in ("random", "active"))
        target = float(random_mean[-1])
        reach = next((size for size, value in zip(DEFAULT_SIZES, active_mean) if value >= target - 1e-12), None)
        print(json.dumps({"source": source, "users": len(users), "random_200": round(target, 4),
                          "active_labels_to_reach_random_200": reach,
                          "random_mean": round(float(random_mean.mean()), 4),
                          "active_mean": round(float(active_mean.mean()), 4),
                          "random": [round(float(v), 3) for v in random_mean],
                          "active": [round(float(v), 3) for v in active_mean]}), flush=True)


if __name__ == "__main__":
    main()
