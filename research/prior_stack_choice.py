"""The recipe choice run with two candidates only: MAP heads on one task prior (``prior-head``) and on three priors
side by side (``prior_members=3``, a LoRA stack), on a data set's train rows; prints each candidate's validation
figures, its folds' scores and its share of user resamples won, as whole-task training measures them.

    python research/prior_stack_choice.py --data ../shared/data/hs_brexit [--members 3] [--mlp]

``--mlp`` compares ``prior-mlp-averaged`` with and without the stack instead. It checks the product's stack
against research/prior_seed_ensemble.py (the same ensemble fitted by hand). Status: a measurement for
reports/findings.md, round 19; the stack is a training argument, not yet one of the choice's candidates.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.recipe_candidates import Candidate, candidate_named
from localize.recipe_choice import Row, choose_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--mlp", action="store_true", help="prior-mlp-averaged against its stacked form")
    options = parser.parse_args()
    data, base = load_eval_data(options.data), get_base_model()
    rows = [Row(r.user, r.text, r.label) for r in data.train]
    single = candidate_named("prior-mlp-averaged" if options.mlp else "prior-head")
    stacked = Candidate(f"{single.name}, {options.members} priors",
                        dataclasses.replace(single.args, prior_members=options.members),
                        f"{single.description}; {options.members} priors side by side")
    started = time.perf_counter()
    choice = choose_recipe(base, rows, data.labels, candidates=[single, stacked],
                           progress=lambda message: print(f"  {message}", flush=True))
    print(f"{data.name}: {choice.folds} fold(s), {choice.users_scored} users scored, "
          f"{time.perf_counter() - started:.0f} s")
    for result in choice.candidates:
        print(f"{result.name}: accuracy {result.accuracy:.4f}, macro-F1 {result.macro_f1:.4f}, score "
              f"{result.score:.4f}, folds {[round(s, 4) for s in result.fold_scores]}, "
              f"resamples won {choice.bootstrap_wins.get(result.name, 0):.0%}, {result.seconds:.0f} s, "
              f"held-out ECE {result.held_out_ece}", flush=True)


if __name__ == "__main__":
    main()
