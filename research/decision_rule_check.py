"""Whether the task's decision rule (logit offsets fitted in the recipe choice, kept only when users they were not
fitted on gain from them) finds and fixes a lean the heads lack: the recipe choice run with one candidate, the
default recipe's heads trained *without* class weights (so they under-predict rare labels), then that recipe
trained on every train row and scored on test rows with the rule the choice kept and without it. Test rows play no
part in the choice.

    python research/decision_rule_check.py --data ../shared/data/hs_brexit --data ../shared/data/convabuse

Status: evidence for the decision rule (reports/findings.md, round 11); the product's heads keep their square-root
class weights, under which the rule found nothing to fix on the four report sets.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from localize.evaluation.data import load_eval_data
from localize.evaluation.harness import Harness, Recipe
from localize.evaluation.runner import _base
from localize.recipe_candidates import Candidate, candidate_named
from localize.recipe_choice import Row, choose_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, action="append", required=True)
    parser.add_argument("--class-weighting", default="none", help="the heads' class weighting in this check")
    options = parser.parse_args()
    base = _base()
    for folder in options.data:
        data = load_eval_data(folder)
        harness = Harness(data, base)
        harness.encode_all()
        default = candidate_named("prior-head")
        candidate = Candidate(f"prior-head, class_weighting={options.class_weighting}",
                              dataclasses.replace(default.args, class_weighting=options.class_weighting), "check")
        choice = choose_recipe(base, [Row(r.user, r.text, r.label) for r in data.train], data.labels,
                               cache=harness.cache, candidates=[candidate])
        measured = choice.candidates[0]
        print(f"{data.name}: validation {measured.accuracy:.3f} / {measured.macro_f1:.3f}; rule "
              f"{measured.decision_offsets or 'none kept'} (out-of-fold gain {measured.decision_gain:+.4f}, "
              f"t {measured.decision_gain_t})", flush=True)
        for name, args in (("with the rule", choice.winner_args),
                           ("without it", dataclasses.replace(choice.winner_args, decision_offsets=None))):
            summary = harness.run_recipe(Recipe(name, args, name)).summary()
            print(f"  test, {name}: {summary['mean_accuracy']:.3f} / {summary['mean_macro_f1']:.3f}", flush=True)


if __name__ == "__main__":
    main()
