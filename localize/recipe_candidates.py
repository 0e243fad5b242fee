"""The recipes whole-task training compares (``localize.recipe_choice`` scores them on a task's held-out texts):
their names, training arguments, descriptions, and which tasks each is tried on.

The first is the default (``prior-head``); ``pooled-head`` tunes no encoder; the MLP heads can express interactions
(gold *and* up); the ``prior3-`` ones read three task priors side by side; ``prior-lora`` tunes an encoder per user.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from localize.training_args import TrainingArguments

MLP_HEAD_HIDDEN = 256
# MLP heads per user in ``prior-mlp-averaged`` (``head_ensemble``): an early-stopped MLP head moves with its seed
# (starting weights, dropout, batch order), and five average much of that away (reports/findings.md, round 15).
MLP_HEADS = 5
# Task priors side by side in the ``prior3-`` candidates (``prior_members``): each user's heads on every prior,
# averaged, remove much of one prior's seed-to-seed luck (reports/findings.md, round 19). Their first prior is
# ``prior-head``'s (trained once for both); each other costs its training again in the choice and in the winner's
# final training, and its tuned layers run once more per text at serving, so they are tried on tasks of up to
# ``STACKED_PRIORS_MAX_ROWS`` labels, whose priors train in a minute or two (the default of the
# ``stacked_priors_max_labels`` setting, which an admin raises where accuracy is worth the time).
STACKED_PRIORS = 3
STACKED_PRIORS_MAX_ROWS = 20_000


@dataclass(frozen=True)
class Candidate:
    name: str
    args: TrainingArguments
    description: str
    per_user_encoder: bool = False  # trains encoder weights per user: minutes per user on a CPU
    max_rows: int | None = None  # tried only on tasks of at most this many labels

    def skipped_for(self, rows: int) -> str | None:
        """Why this candidate is not tried on a task of ``rows`` labels, or None."""
        if self.max_rows is not None and rows > self.max_rows:
            return (f"the task has {rows:,} labels; {self.args.prior_members} priors side by side are tried on "
                    f"tasks of up to {self.max_rows:,} (each trains as long as one prior, and serving runs the "
                    "tuned layers once per prior; the setting stacked_priors_max_labels raises the limit)")
        return None

    def uses_prior(self) -> bool:
        return self.args.init_from_prior


def candidate_recipes(stacked_priors_max_rows: int = STACKED_PRIORS_MAX_ROWS) -> list[Candidate]:
    """The recipes whole-task training compares; the first is the default (``prior-head``). The ``prior3-`` ones
    are tried on tasks of up to ``stacked_priors_max_rows`` labels (the ``stacked_priors_max_labels`` setting)."""
    default = TrainingArguments()
    return [
        Candidate("prior-head", default, "a linear head per user (MAP, pulled toward the prior's head) on a task "
                  "prior: LoRA on the base's top four layers, trained on every user's labels"),
        Candidate("pooled-head", TrainingArguments(method="head", method_options={}, train_scope="head",
                                                   prior_max_epochs=60, prior_class_weighting="sqrt"),
                  "a linear head per user (MAP) on the frozen base, pulled toward one head fitted on every user's "
                  "labels: no encoder is tuned"),
        Candidate("prior-mlp", dataclasses.replace(default, head_hidden=MLP_HEAD_HIDDEN),
                  "a residual MLP head per user (AdamW epochs) on the same task prior: can express interactions "
                  "(gold and up) that a linear head cannot"),
        Candidate("prior-mlp-averaged", dataclasses.replace(default, head_hidden=MLP_HEAD_HIDDEN,
                                                            head_ensemble=MLP_HEADS),
                  f"{MLP_HEADS} residual MLP heads per user on the same task prior, from {MLP_HEADS} seeds, served as "
                  "one that averages them (less of one seed's luck); their first heads are prior-mlp's"),
        Candidate(f"prior{STACKED_PRIORS}-head", dataclasses.replace(default, prior_members=STACKED_PRIORS),
                  f"prior-head's linear heads on {STACKED_PRIORS} task priors (seeds 0 to {STACKED_PRIORS - 1}) side "
                  "by side: each user's head on each prior, their logits averaged (less of one prior's luck; the "
                  f"tuned layers run {STACKED_PRIORS} times per text)", max_rows=stacked_priors_max_rows),
        Candidate(f"prior{STACKED_PRIORS}-mlp-averaged",
                  dataclasses.replace(default, head_hidden=MLP_HEAD_HIDDEN, head_ensemble=MLP_HEADS,
                                      prior_members=STACKED_PRIORS),
                  f"prior-mlp-averaged's heads on the same {STACKED_PRIORS} task priors side by side, all averaged",
                  max_rows=stacked_priors_max_rows),
        # A warm-up, then a decay: at a constant rate one user's LoRA in eight on the demo's labels stalled after its
        # first epoch and never learnt (reports/findings.md, round 25).
        Candidate("prior-lora", dataclasses.replace(default, train_scope="all", max_epochs=8, lr_schedule="linear"),
                  "LoRA per user, started from the task prior (the prior's layers tuned on the user's own labels)",
                  per_user_encoder=True),
    ]


def candidate_named(name: str) -> Candidate:
    for candidate in candidate_recipes():
        if candidate.name == name:
            return candidate
    raise ValueError(f"recipe {name!r} is not one of {[c.name for c in candidate_recipes()]}")


def configured_candidates(names: str | None,
                          stacked_priors_max_rows: int = STACKED_PRIORS_MAX_ROWS) -> list[Candidate]:
    """The candidates a comma-separated list names (the ``recipe_candidates`` setting), in the default order; all
    of them when it is unset or empty. ``stacked_priors_max_rows``: see :func:`candidate_recipes`."""
    wanted = [name.strip() for name in (names or "").split(",") if name.strip()]
    for name in wanted:
        candidate_named(name)  # an unknown name is an error that lists the known ones
    return [c for c in candidate_recipes(stacked_priors_max_rows) if not wanted or c.name in wanted]
