"""Two other ways to order the labelling queue, against the product's, by the active-learning simulation on
MD-Agreement users the committed report leaves out (as queue_mix_on_held_out_users.py), each order averaged over
three seeds (the report's active order runs one):

- ``default``: the product's rule (``order_queue``): the highest ``0.5 * uncertainty + 0.5 * disagreement`` first,
  half the slots random;
- ``power``: the same score, but each non-random slot drawn at random with probability proportional to
  ``score ** power`` (stochastic "power" acquisition), so picks spread beyond the few most ambiguous texts;
- ``balanced``: the non-random slots go round the labels the user's model predicts, each time the highest-scoring
  text predicted as that label (a class-balanced queue).

    python research/queue_ordering_variants.py --data ../shared/data/md_agreement --skip 24 --cache DIR

Prints, per ordering, the labels needed to reach random order's 200-label macro-F1 and the curve's mean. Status:
not adopted, and superseded (4 Dec): measured on frozen-base heads with the even mix (0.5 / 0.5), before the queue
was measured on the product's own model (reports/findings.md, round 12).
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch

from localize.base_model import get_base_model
from localize.evaluation.active_learning import DEFAULT_SIZES, RANDOM_SEEDS, _Simulator, cached_encoder
from localize.evaluation.data import load_eval_data
from localize.evaluation.harness import user_metrics
from localize.services.queue import DEFAULT_RANDOM_SHARE, disagreement, margin_uncertainty, order_queue
from localize.training_args import TrainingArguments

ORDERINGS = ("default", "power:1", "power:2", "power:4", "balanced")


def _order(ordering: str, user_p, prior_p, n: int, k: int, rng: random.Random) -> list[int]:  # noqa: ANN001
    if ordering == "default" or user_p is None:  # before the first fit every ordering is the product's
        return [p.index for p in order_queue(user_probabilities=user_p, prior_probabilities=prior_p,
                                             n_candidates=n, limit=k, seed=rng.randrange(2**32))]
    score = 0.5 * margin_uncertainty(user_p) + 0.5 * disagreement(user_p, prior_p)
    predicted = user_p.argmax(1)
    ranked = list(np.argsort(-score))
    picks: list[int] = []
    turn = rng.randrange(user_p.shape[1])
    for slot in range(k):
        rest = [i for i in range(n) if i not in picks]
        if int((slot + 1) * DEFAULT_RANDOM_SHARE) > int(slot * DEFAULT_RANDOM_SHARE):
            picks.append(rng.choice(rest))
        elif ordering.startswith("power:"):
            power = float(ordering.split(":")[1])
            picks.append(rest[rng.choices(range(len(rest)), weights=score[rest] ** power + 1e-9)[0]])
        else:  # balanced: the next label in turn that some remaining text is predicted as
            for _ in range(user_p.shape[1]):
                label, turn = turn % user_p.shape[1], turn + 1
                chosen = next((int(i) for i in ranked if predicted[i] == label and i not in picks), None)
                if chosen is not None:
                    picks.append(chosen)
                    break
            else:
                picks.append(next(int(i) for i in ranked if i not in picks))
    return picks


def _curve(simulator: _Simulator, data, user: str, ordering: str, seed: int, prior) -> list[float]:  # noqa: ANN001
    pool = data.rows(user, "train")
    pool_x, pool_y = simulator._xy(pool)
    test_x, test_y = simulator._xy(data.rows(user, "test"))
    prior_pool = simulator._proba(prior, pool_x)
    rng = random.Random(f"{seed}:{user}")
    shuffled = list(range(len(pool)))
    rng.shuffle(shuffled)
    revealed: list[int] = []
    head, scores = None, []
    for size in DEFAULT_SIZES:
        if ordering == "random":
            revealed = shuffled[:size]
        while len(revealed) < size:
            remaining = [i for i in range(len(pool)) if i not in set(revealed)]
            user_p = None if head is None else simulator._proba(head, pool_x[remaining])
            picks = _order(ordering, user_p, prior_pool[remaining], len(remaining), min(10, size - len(revealed)), rng)
            revealed += [remaining[i] for i in picks]
        index = torch.tensor(revealed)
        head = simulator._fit(pool_x[index], pool_y[index], prior)
        scores.append(user_metrics(test_y.numpy(), simulator._proba(head, test_x).argmax(1))[1])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--skip", type=int, default=24, help="eligible users the report simulates (left out here)")
    parser.add_argument("--users", type=int, default=None, help="only the first N of the users left")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--orderings", default=",".join(ORDERINGS))
    options = parser.parse_args()
    torch.set_num_threads(1)
    data = load_eval_data(options.data)
    args = TrainingArguments()
    simulator = _Simulator(data, cached_encoder(get_base_model(), options.cache), strength=args.head_prior_strength,
                           weighting=args.class_weighting)
    users = [u for u in data.users if len(data.rows(u, "train")) >= max(DEFAULT_SIZES)][options.skip:]
    users = users[: options.users] if options.users else users
    orderings = options.orderings.split(",")
    curves: dict[str, list] = {name: [] for name in ["random", *orderings]}
    for user in users:
        prior = simulator.prior_without(user)
        for name in curves:
            curves[name].append(np.mean([_curve(simulator, data, user, name, seed, prior) for seed in RANDOM_SEEDS], 0))
    target = float(np.mean(curves["random"], 0)[-1])
    for name in curves:
        mean = np.mean(curves[name], 0)
        reach = next((size for size, value in zip(DEFAULT_SIZES, mean) if value >= target - 1e-12), None)
        print(json.dumps({"ordering": name, "users": len(users), "labels_to_reach_random_200": reach,
                          "random_200": round(target, 4), "curve_mean": round(float(mean.mean()), 4)}), flush=True)


if __name__ == "__main__":
    main()
