"""Chooses the labelling queue's mix (uncertainty, disagreement with the prior, random share) by the active-learning
simulation on MD-Agreement users that the committed report leaves out: the report simulates the first 24 users
(by name) with at least 200 train rows, this script the others, so the choice never sees the reported users.

    python research/queue_mix_on_held_out_users.py --data ../shared/data/md_agreement --skip 24 [--users N] --cache DIR
        [--encoder prior --prior-last-epoch 2]

``--encoder prior`` simulates the product's own model (users' heads on a task prior trained without them) instead of
heads on the frozen base; see ``localize.evaluation.active_learning``.

Prints, per mix, the labels active order needs to reach random order's 200-label macro-F1 and the mean macro-F1 over
the curve's points (higher: learns faster), as JSON lines.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from localize.base_model import get_base_model
from localize.evaluation.active_learning import cached_encoder, simulate
from localize.evaluation.data import load_eval_data

MIXES = {  # (uncertainty weight / disagreement weight / random share)
    "even (0.5 / 0.5 / 0.5; the default until 4 Dec)": {"uncertainty_weight": 0.5, "disagreement_weight": 0.5,
                                                         "random_share": 0.5},
    "mostly disagreement (0.25 / 0.75 / 0.5; the default)": {"uncertainty_weight": 0.25, "disagreement_weight": 0.75,
                                                             "random_share": 0.5},
    "disagreement only (0 / 1 / 0.5)": {"uncertainty_weight": 0.0, "disagreement_weight": 1.0, "random_share": 0.5},
    "uncertainty only (1 / 0 / 0.5)": {"uncertainty_weight": 1.0, "disagreement_weight": 0.0, "random_share": 0.5},
    "less random (0.5 / 0.5 / 0.2)": {"uncertainty_weight": 0.5, "disagreement_weight": 0.5, "random_share": 0.2},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--skip", type=int, default=24, help="eligible users the report simulates (left out here)")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--users", type=int, default=None, help="only the first N of the users left")
    parser.add_argument("--encoder", choices=("base", "prior"), default="base")
    parser.add_argument("--prior-last-epoch", type=int, default=None)
    options = parser.parse_args()
    if options.prior_last_epoch is not None and options.prior_last_epoch < 1:
        parser.error(f"--prior-last-epoch must be at least 1, not {options.prior_last_epoch}")
    data = load_eval_data(options.data)
    base = get_base_model()
    # Every mix reads the same priors: without --cache they are kept in a temporary folder, trained once.
    with tempfile.TemporaryDirectory() as scratch:
        cache = options.cache or Path(scratch)
        for name, mix in MIXES.items():
            _report(name, simulate(data, cached_encoder(base, cache), skip_users=options.skip,
                                   limit_users=options.users, queue_options=mix, prior_cache=cache,
                                   task_prior_base=base if options.encoder == "prior" else None,
                                   prior_last_epoch=options.prior_last_epoch))


def _report(name: str, curves) -> None:  # noqa: ANN001
    target = curves.macro_f1["random"][-1]
    print(json.dumps({"mix": name, "encoder": curves.encoder, "users": len(curves.users),
                      "labels_to_reach_random_200": curves.labels_to_reach("active", target),
                      "random_200": round(target, 4),
                      "active_curve_mean": round(float(np.mean(curves.macro_f1["active"])), 4),
                      "random_curve_mean": round(float(np.mean(curves.macro_f1["random"])), 4)}), flush=True)


if __name__ == "__main__":
    main()
