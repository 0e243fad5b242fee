"""Research script: choose each user's model family on their own validation rows.

The default recipe (a linear head on the LoRA task prior) wins on MD-Agreement and HS-Brexit, where users differ
mostly in how much they tolerate; on data where a user's truth is an interaction (the traders data set of
``traders_dataset.py``: asset *and* direction *and* the user's position) a head with an MLP, trained whole, wins.
This trains both for every user through the harness (the production Trainer, the same seed, so the same validation
rows), keeps per user the one with the better validation score, and scores the choice on test rows; it also
scores one choice per task, the recipe with the best mean validation score over the task's users.
Caveat: each recipe's task prior trains on every user's pooled train rows, validation rows included, so validation
scores flatter recipes whose prior remembers more (the MLP's); test scores are clean (reports/findings.md).

    python research/select_head_per_user.py --data ../shared/data/hs_brexit
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.evaluation.harness import Harness, MethodResult, Recipe, user_metrics
from localize.evaluation.recipes import default_recipe
from localize.training_args import TrainingArguments

CANDIDATES = {
    "mlp256 whole": TrainingArguments(method="head", method_options={"hidden": 256}, train_scope="all"),
    "mlp256 whole, sqrt": TrainingArguments(method="head", method_options={"hidden": 256}, train_scope="all",
                                            class_weighting="sqrt"),
    "mlp256 whole, no prior": TrainingArguments(method="head", method_options={"hidden": 256}, train_scope="all",
                                                init_from_prior=False),
}
OBJECTIVES = {  # validation score to maximise: the user's macro-F1, or accuracy and macro-F1 together
    "macro-F1": lambda accuracy, macro_f1: (macro_f1, accuracy),
    "accuracy + macro-F1": lambda accuracy, macro_f1: (accuracy + macro_f1, macro_f1),
}


def validation_scores(result: MethodResult, user: str) -> tuple[float, float]:
    probabilities, targets = result.validation[user]
    return user_metrics(targets, probabilities.argmax(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--candidate", action="append", choices=list(CANDIDATES),
                        help="only these candidates (repeat); default: all")
    options = parser.parse_args()
    candidates = {name: CANDIDATES[name] for name in options.candidate or CANDIDATES}
    data = load_eval_data(options.data)
    started = time.perf_counter()
    harness = Harness(data, get_base_model(), cache=ActivationCache(max_bytes=12 << 30),
                      progress=lambda m: print(f"[{time.perf_counter() - started:6.0f}s] {m}", flush=True))
    harness.encode_all(write=False)
    default = harness.run_recipe(default_recipe())
    results = {"default": default}
    for name, args in candidates.items():
        results[name] = harness.run_recipe(Recipe(name, args))
    test = {name: {u.user: (u.accuracy, u.macro_f1) for u in result.users} for name, result in results.items()}
    for name in results:
        print(f"{name}: accuracy {np.mean([a for a, _ in test[name].values()]):.3f}, "
              f"macro-F1 {np.mean([f for _, f in test[name].values()]):.3f}")
    for objective, score in OBJECTIVES.items():
        # One choice for the whole task: the recipe with the best mean validation score over its users (all
        # users' validation rows together are far more than one user's ~50).
        means = {name: score(*np.mean([validation_scores(result, u) for u in result.validation], axis=0))
                 for name, result in results.items()}
        best = max(means, key=means.get)
        print(f"per task, by mean validation {objective}: {best} "
              f"({', '.join(f'{n} {m[0]:.3f}' for n, m in means.items())}): accuracy "
              f"{np.mean([a for a, _ in test[best].values()]):.3f}, "
              f"macro-F1 {np.mean([f for _, f in test[best].values()]):.3f}", flush=True)
    for candidate in candidates:
        for objective, score in OBJECTIVES.items():
            chosen, picks = [], 0
            for user in data.users:
                pair = ("default", candidate)
                if all(user in results[n].validation for n in pair):
                    assert np.array_equal(results["default"].validation[user][1],
                                          results[candidate].validation[user][1]), "validation rows differ"
                    best = max(pair, key=lambda n: (score(*validation_scores(results[n], user)), n == "default"))
                else:
                    best = "default"
                picks += best != "default"
                chosen.append(test[best][user])
            print(f"per user, default or {candidate}, by validation {objective}: accuracy "
                  f"{np.mean([a for a, _ in chosen]):.3f}, macro-F1 {np.mean([f for _, f in chosen]):.3f} "
                  f"({picks}/{len(data.users)} users took {candidate})", flush=True)


if __name__ == "__main__":
    main()
