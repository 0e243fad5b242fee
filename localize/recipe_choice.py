"""Choosing a task's recipe on its own labels: each candidate trains on part of the task's texts and is scored on
the rest, pooled over every user; the best mean of per-user accuracy and macro-F1 wins.

No recipe is best everywhere: heads on a LoRA task prior win on large tasks, a head pulled toward one pooled head
wins where a prior overfits a few hundred texts, an MLP head wins where a user's truth is an interaction (gold *and*
up). So whole-task training tries a few and keeps the winner.

Validation is by text (a text is held out for every user at once), with a split of its own (``choice_fold``, not
the trainers' ``held_out_text``), so no candidate's prior has trained on, or early-stopped on, a row it is scored on:

- a large task (``SMALL_TASK_TEXTS`` distinct texts or more) holds out one ``HOLDOUT_FRACTION`` of its texts;
- a small one uses ``FOLDS`` folds by text, so every row is scored once and the choice rests on all of them.

How stable the choice is: the winner of each fold, and the share of user resamples (bootstrap) each candidate wins.

The held-out rows also correct calibration. A version's temperature is fitted on its own validation rows, which
also chose its epoch (and a MAP head is refitted on them afterwards), so on unseen texts it can be surer than it
is right; and a few dozen rows rarely show how often an annotator contradicts themselves. Each candidate's users
are calibrated as in production, and one correction (a factor on their temperatures, a uniform share added to
theirs) is fitted on the held-out rows they never saw; the winner's recipe carries it (``temperature_scale``,
``added_uniform_share``) to every user's job.

Candidates share what trains alike: one prior for every candidate whose prior's arguments are the same, and a stack
of priors starts from that prior as its first member (the lone prior of the same seed).

The winner's task prior is then trained again on every text (the held-out ones too: they are a fifth of a large
task's texts), stopping at the epoch the choice's own priors found best (``prior_last_epoch``).

Nothing here touches the database; ``localize.services.recipe_choice`` runs it as a job and stores the result.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from localize.activations import ActivationCache, ScoringActivationCache, get_activation_cache
from localize.base_model import BaseModel
from localize.calibration import combined_share, expected_calibration_error, fit_calibration_correction, spread_evenly
from localize.decision_rule import fit_decision_rule
from localize.engine import AdapterWeights
from localize.epoch_loop import format_duration
from localize.recipe_candidates import Candidate, candidate_recipes
from localize.training import Trainer, classification_metrics
from localize.training_args import TrainingArguments

logger = logging.getLogger(__name__)

SMALL_TASK_TEXTS = 1500
FOLDS = 3  # each fold trains the candidates' priors again: three score every row once at three priors' cost
HOLDOUT_FRACTION = 0.2
BOOTSTRAP_RESAMPLES = 200
# Users whose fits score the candidates: beyond this many, a fixed sample (by a hash of the name). Every prior still
# trains on every user's labels; the sample bounds the per-user fits (an MLP head by epochs: seconds per user).
CHOICE_USERS = 200
# A per-user encoder (LoRA) runs the tuned layers every epoch, minutes per user on a CPU: it stays a candidate
# only while its users' fits so far, times the fits the choice needs, project under this many seconds.
ENCODER_SECONDS_BUDGET = 600.0
BUDGET_PROBE_USERS = 1  # fits timed before a per-user encoder's projected cost is judged (each one after)
PROGRESS_SECONDS = 5.0  # how often a long run of users' fits reports how far it is


class _OverBudget(Exception):
    pass

Progress = Callable[[str], None]


def choice_fold(text: str, folds: int) -> int:
    """Which fold ``text`` belongs to: a fixed function of the text, independent of the trainers' own split."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, person=b"localize-pick").digest()
    return int.from_bytes(digest, "big") % folds


def held_out_splits(texts: Sequence[str], folds: int | None = None) -> list[set[str]]:
    """The texts each fold of the choice holds out: ``FOLDS`` folds by text below ``SMALL_TASK_TEXTS`` distinct
    texts, one held-out ``HOLDOUT_FRACTION`` above (``folds`` overrides: 1 for the held-out share)."""
    distinct = sorted(set(texts))
    if folds is None:
        folds = FOLDS if len(distinct) < SMALL_TASK_TEXTS else 1
    if folds == 1:
        return [{t for t in distinct if choice_fold(t, round(1 / HOLDOUT_FRACTION)) == 0}]
    return [{t for t in distinct if choice_fold(t, folds) == k} for k in range(folds)]


@dataclass(frozen=True)
class Row:
    user: str
    text: str
    label: str


@dataclass
class CandidateResult:
    name: str
    description: str
    accuracy: float | None = None  # mean over users of validation accuracy
    macro_f1: float | None = None
    score: float | None = None  # (accuracy + macro_f1) / 2: what the choice maximises
    users: int = 0
    seconds: float = 0.0  # priors and every user's fits, over all folds
    fold_scores: list[float] = field(default_factory=list)
    skipped: str | None = None  # why a candidate was not tried
    scored_from: str | None = None  # the candidate whose fits' first heads scored this one (its seconds count there)
    # Calibration on the held-out rows: the correction fitted there, and ECE before and after it.
    temperature_scale: float = 1.0
    added_uniform_share: float = 0.0
    held_out_ece: float | None = None
    held_out_ece_corrected: float | None = None
    # The task's decision rule, fitted on the same rows: logit offsets by label (empty: plain argmax), the mean
    # gain in per-user score they brought there, and that gain over its standard error across users.
    decision_offsets: dict[str, float] = field(default_factory=dict)
    decision_gain: float | None = None
    decision_gain_t: float | None = None
    # The latest best epoch of its priors: where its prior, trained again on every text, would stop.
    prior_last_epoch: int | None = None
    per_user: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(self).items() if key != "per_user"}


@dataclass
class RecipeChoice:
    winner: str
    winner_args: TrainingArguments
    candidates: list[CandidateResult]
    folds: int  # 1: one held-out share of the texts
    users_scored: int  # users whose held-out rows scored every tried candidate
    users: int  # users whose labels the priors trained on
    validation_texts: int
    validation_rows: int
    fold_winners: list[str]
    bootstrap_wins: dict[str, float]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.winner,
            "args": self.winner_args.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "folds": self.folds,
            "users_scored": self.users_scored,
            "users": self.users,
            "validation_texts": self.validation_texts,
            "validation_rows": self.validation_rows,
            "fold_winners": self.fold_winners,
            "bootstrap_wins": self.bootstrap_wins,
            "seconds": self.seconds,
            "criterion": "mean over users of (validation accuracy + validation macro-F1) / 2",
        }


def choose_recipe(
    base: BaseModel,
    rows: Sequence[Row],
    label_set: list[str],
    *,
    candidates: list[Candidate] | None = None,
    cache: ActivationCache | None = None,
    progress: Progress | None = None,
    folds: int | None = None,
) -> RecipeChoice:
    """Scores every candidate on held-out texts of ``rows`` (every user's labels of one task) and picks one."""
    started = time.perf_counter()
    progress = progress or (lambda message: None)
    candidates = candidates or candidate_recipes()
    # The candidates' priors and fits are never served: their encodings may be computed in bfloat16.
    cache = ScoringActivationCache(cache or get_activation_cache())
    texts = sorted({r.text for r in rows})
    splits = held_out_splits(texts, folds)
    results = [CandidateResult(c.name, c.description, skipped=c.skipped_for(len(rows))) for c in candidates]
    result_of = {r.name: r for r in results}
    first_head_of = _first_head_partners(candidates)  # a lone head's candidate -> the averaged heads' candidate
    fit_order = sorted(candidates, key=lambda c: c.name in first_head_of)  # the averaged heads before their first
    scored_users = _sample_users(sorted({r.user for r in rows}))
    fits = len(scored_users) * len(splits)  # per candidate: one fit per scored user and fold
    held_out: dict[str, dict[str, list[_HeldOut]]] = {r.name: {} for r in results}  # candidate -> user -> folds
    fold_scores: dict[str, list[float]] = {r.name: [] for r in results}
    best_epochs: dict[str, list[int]] = {r.name: [] for r in results}  # candidate -> its priors' best epochs
    for index, held in enumerate(splits):
        train_rows = [r for r in rows if r.text not in held]
        val_rows = [r for r in rows if r.text in held and r.user in scored_users]
        priors: dict[str, tuple[Trainer, AdapterWeights]] = {}  # a fold's priors: trained on its texts only
        first_heads: dict[str, dict[str, _HeldOut]] = {}  # averaged heads' candidate -> its first heads, this fold
        for candidate in fit_order:
            result = result_of[candidate.name]
            if result.skipped:
                continue
            tick = time.perf_counter()
            where = f"fold {index + 1}/{len(splits)}" if len(splits) > 1 else "held-out texts"
            try:
                init = _prior(base, candidate.args, train_rows, texts, label_set, cache, priors, progress,
                              f"{candidate.name}, {where}") if candidate.uses_prior() else None
                budget = ENCODER_SECONDS_BUDGET if candidate.per_user_encoder and index == 0 else None
                partner = first_head_of.get(candidate.name)
                if partner in first_heads:  # the averaged heads' fits held this candidate's heads: no fit of its own
                    per_user, result.scored_from = first_heads[partner], partner
                else:
                    lone = {} if candidate.name in first_head_of.values() else None
                    per_user = _fit_users(base, candidate.args, train_rows, val_rows, label_set, init, cache,
                                          budget_seconds=budget, fits=fits, first_heads=lone,
                                          progress=lambda message: progress(f"{candidate.name}, {where}: {message}"))
                    if lone is not None:
                        first_heads[candidate.name] = lone
            except _OverBudget as over:
                result.skipped = str(over)
                progress(f"{candidate.name} skipped: {over}")
                continue
            except Exception as error:  # noqa: BLE001  (a candidate that cannot train loses; the others go on)
                logger.exception("recipe %s failed", candidate.name)
                result.skipped = f"failed: {type(error).__name__}: {error}"
                continue
            if init is not None and init.meta.get("metrics", {}).get("best_epoch"):
                best_epochs[candidate.name].append(init.meta["metrics"]["best_epoch"])
            for user, rows_held in per_user.items():
                held_out[candidate.name].setdefault(user, []).append(rows_held)
            fold_scores[candidate.name].append(
                _score({u: (h.targets, h.predicted) for u, h in per_user.items()}, len(label_set))[2])
            result.seconds += time.perf_counter() - tick
            spent = f"{time.perf_counter() - tick:.0f} s" if partner not in first_heads else f"{partner}'s first heads"
            progress(f"{candidate.name}, {where}: score {fold_scores[candidate.name][-1]:.3f} ({spent})")
    tried = [r for r in results if not r.skipped]
    if not tried:
        raise ValueError("no recipe could be trained on this task's labels: "
                         + "; ".join(f"{r.name}: {r.skipped}" for r in results))
    # Users every tried candidate scored, so all are compared on the same rows.
    common = set.intersection(*(set(held_out[r.name]) for r in tried))
    for result in tried:
        parts = [part for u in sorted(common) for part in held_out[result.name][u]]
        scored = {u: (sum((h.targets for h in held_out[result.name][u]), []),
                      sum((h.predicted for h in held_out[result.name][u]), [])) for u in common}
        result.per_user = {u: _user_scores(t, p, len(label_set)) for u, (t, p) in scored.items()}
        result.accuracy, result.macro_f1, result.score = _score(scored, len(label_set))
        result.users = len(scored)
        result.fold_scores = fold_scores[result.name]
        _correct_calibration(result, parts)
        _fit_decision_offsets(result, {u: held_out[result.name][u] for u in common}, label_set)
        if result.held_out_ece is not None:  # as served: corrected, and with the decision rule
            offsets = np.array([result.decision_offsets.get(label, 0.0) for label in label_set])
            result.held_out_ece_corrected = _held_out_ece(parts, result.temperature_scale,
                                                          result.added_uniform_share, offsets)
    order = {c.name: i for i, c in enumerate(candidates)}
    by_name = {c.name: c for c in candidates}
    winner = max(tried, key=lambda r: (r.score, -order[r.name]))  # a tie goes to the candidate listed first
    fold_winners = [max(tried, key=lambda r: r.fold_scores[k]).name for k in range(len(splits))
                    if all(len(r.fold_scores) > k for r in tried)]
    # The prior trained again on every text stops at the latest epoch the choice's priors found best: validation
    # loss told them where to stop, and running one epoch past it to be told again costs minutes on a large task.
    for result in tried:
        result.prior_last_epoch = max(best_epochs[result.name], default=None)
    winner_args = dataclasses.replace(by_name[winner.name].args, temperature_scale=winner.temperature_scale,
                                      added_uniform_share=winner.added_uniform_share,
                                      decision_offsets=winner.decision_offsets or None,
                                      prior_last_epoch=winner.prior_last_epoch)
    return RecipeChoice(
        winner=winner.name, winner_args=winner_args, candidates=results, folds=len(splits),
        users_scored=len(common), users=len({r.user for r in rows}),
        validation_texts=sum(len(h) for h in splits),
        validation_rows=sum(1 for r in rows if r.user in common and any(r.text in h for h in splits)),
        fold_winners=fold_winners, bootstrap_wins=_bootstrap_wins(tried, sorted(common)),
        seconds=time.perf_counter() - started)


@dataclass
class _HeldOut:
    """One user's fit scored on held-out rows: label indexes, predictions, its served logits, and whether the fit
    was calibrated (the task's correction then applies to it) with its uniform share."""
    targets: list[int]
    predicted: list[int]
    logits: np.ndarray | None = None
    calibrated: bool = False
    share: float = 0.0


def _correct_calibration(result: CandidateResult, parts: list[_HeldOut]) -> None:
    """Fits the candidate's calibration correction on its calibrated fits' held-out rows, with ECE before it."""
    parts = [p for p in parts if p.calibrated and len(p.targets)]
    if not parts:
        return
    logits, shares = [p.logits for p in parts], [p.share for p in parts]
    scale, added = fit_calibration_correction(logits, shares, [np.asarray(p.targets) for p in parts])
    result.temperature_scale, result.added_uniform_share = round(scale, 4), round(added, 4)
    result.held_out_ece = _held_out_ece(parts, 1.0, 0.0, None)


def _held_out_ece(parts: list[_HeldOut], scale: float, added: float, offsets: np.ndarray | None) -> float:
    """ECE of calibrated fits' held-out rows served with a calibration correction and decision offsets."""
    parts = [p for p in parts if p.calibrated and len(p.targets)]
    shift = 0.0 if offsets is None else offsets
    probabilities = np.concatenate([spread_evenly(_softmax(p.logits / scale + shift), combined_share(p.share, added))
                                    for p in parts])
    return round(expected_calibration_error(probabilities, np.concatenate([p.targets for p in parts])), 4)


def _fit_decision_offsets(result: CandidateResult, held_out: dict[str, list[_HeldOut]], label_set: list[str]) -> None:
    """The candidate's decision rule (``decision_rule``), fitted on its users' held-out rows as served: corrected
    by the calibration correction where the fit was calibrated."""
    users = [parts for _, parts in sorted(held_out.items()) if parts and all(p.logits is not None for p in parts)]
    rule = fit_decision_rule([(np.array([t for p in parts for t in p.targets], dtype=np.int64),
                               np.concatenate([p.logits / (result.temperature_scale if p.calibrated else 1.0)
                                               for p in parts])) for parts in users], label_set)
    if rule is not None:
        result.decision_offsets, result.decision_gain, result.decision_gain_t = rule.offsets, rule.gain, rule.gain_t


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _sample_users(users: list[str]) -> set[str]:
    """Every user, or ``CHOICE_USERS`` of them chosen by a hash of the name (the same sample on every run)."""
    if len(users) <= CHOICE_USERS:
        return set(users)
    rank = sorted(users, key=lambda u: hashlib.blake2b(u.encode("utf-8"), digest_size=8,
                                                      person=b"localize-who").digest())
    return set(rank[:CHOICE_USERS])


def final_prior_note(args: TrainingArguments) -> str | None:
    """How the chosen recipe's task prior is trained after the choice (the choice record's ``prior``)."""
    if not args.init_from_prior:
        return None
    if args.prior_last_epoch is None:
        return "trained again on every text"
    return (f"trained again on every text (those the choice held out too), to epoch {args.prior_last_epoch}: "
            "the latest best epoch of the choice's own priors")


def _prior_key(args: TrainingArguments) -> str:
    return repr(args.for_prior().to_dict())


def _prior(base: BaseModel, args: TrainingArguments, rows: list[Row], texts: list[str], label_set: list[str],
           cache: ActivationCache, priors: dict[str, tuple[Trainer, AdapterWeights]], progress: Progress,
           what: str) -> AdapterWeights:
    """The task prior ``args`` read, trained on ``rows`` (shared by candidates whose priors train alike; a stack of
    priors starts from the lone prior of its first seed when one has trained). When users fit heads on its encoding,
    every one of the task's ``texts`` is encoded with it at once, in large batches sorted by length, rather than a
    few dozen texts in each user's fit."""
    key = _prior_key(args)
    if key not in priors:
        first = priors.get(_prior_key(dataclasses.replace(args, prior_members=1))) if args.prior_members > 1 else None
        reused = "; the first of them is the one prior trained above" if first else ""
        progress(f"{what}: training the task prior ({args.method}"
                 + (f", {args.prior_members} side by side" if args.prior_members > 1 else "")
                 + f") on {len(rows):,} pooled rows{reused}")
        trainer = Trainer(base, args.for_prior(), [r.text for r in rows], [r.label for r in rows], label_set,
                          cache=cache, annotators=[r.user for r in rows], trained_members=[first[0]] if first else (),
                          progress=lambda fraction, message: progress(f"{what}: task prior, {message}"))
        priors[key] = (trainer, trainer.train())
        if args.train_scope == "head" and priors[key][1].params:
            cache.encoded(base, priors[key][1], texts, batch_size=128,
                          progress=lambda done, total: progress(f"{what}: encoding {done:,}/{total:,} texts"))
    return priors[key][1]


def _first_head_partners(candidates: list[Candidate]) -> dict[str, str]:
    """``{lone head's candidate: averaged heads' candidate}`` for candidates that differ only in ``head_ensemble``
    (one head against several): the first of several heads is exactly the lone head of the same seed."""
    partners = {}
    for averaged in candidates:
        if averaged.args.head_ensemble > 1:
            lone_args = dataclasses.replace(averaged.args, head_ensemble=1)
            for lone in candidates:
                if lone.args == lone_args and lone.per_user_encoder == averaged.per_user_encoder:
                    partners.setdefault(lone.name, averaged.name)
    return partners


def _fit_users(base: BaseModel, args: TrainingArguments, train_rows: list[Row], val_rows: list[Row],
               label_set: list[str], init: AdapterWeights | None, cache: ActivationCache | None, *,
               budget_seconds: float | None = None, fits: int = 0, first_heads: dict[str, _HeldOut] | None = None,
               progress: Progress | None = None) -> dict[str, _HeldOut]:
    """Per user with held-out rows and enough training rows: what the fit said on the held-out rows. With
    ``budget_seconds``, once a few users are fitted, their mean time times ``fits`` is the projected cost: over the
    budget, nothing more is trained. With ``first_heads`` (several heads averaged), what each user's first head
    alone said is put there too. ``progress`` hears how many users are done (at most every few seconds)."""
    train_by_user: dict[str, list[Row]] = {}
    for r in train_rows:
        train_by_user.setdefault(r.user, []).append(r)
    val_by_user: dict[str, list[Row]] = {}
    for r in val_rows:
        val_by_user.setdefault(r.user, []).append(r)
    out = {}
    started = reported = time.perf_counter()
    for done, (user, held) in enumerate(sorted(val_by_user.items())):
        if progress is not None and done and time.perf_counter() - reported >= PROGRESS_SECONDS:
            reported = time.perf_counter()
            left = (reported - started) / done * (len(val_by_user) - done)
            progress(f"{done:,}/{len(val_by_user):,} users fitted; about {format_duration(left)} left")
        own = train_by_user.get(user, [])
        if len(own) < args.min_labels or len({r.label for r in own}) < 2:
            continue
        trainer = Trainer(base, args, [r.text for r in own], [r.label for r in own], label_set, init=init, cache=cache)
        trainer.train()
        targets, calibrated = [label_set.index(r.label) for r in held], args.calibrate and trainer.val_split is not None
        logits = trainer.predict_logits([r.text for r in held]).numpy()
        out[user] = _HeldOut(targets, logits.argmax(1).tolist(), logits, calibrated, trainer.uniform_share)
        if first_heads is not None:
            lone, share = trainer.first_head_logits([r.text for r in held])
            first_heads[user] = _HeldOut(targets, lone.argmax(1).tolist(), lone.numpy(), calibrated, share)
        if budget_seconds is not None and len(out) >= BUDGET_PROBE_USERS:
            spent = time.perf_counter() - started
            projected = spent / len(out) * fits
            if projected > budget_seconds:
                who = "first user's fit" if len(out) == 1 else f"first {len(out)} users' fits"
                raise _OverBudget(f"its {who} took {spent:.0f} s; {fits} fits would take "
                                  f"about {projected / 60:.0f} min, over the budget of {budget_seconds / 60:.0f} min")
    return out


def _user_scores(targets: list[int], predicted: list[int], num_labels: int) -> tuple[float, float]:
    """Accuracy and macro-F1 over the labels in the user's truth or predictions (as ``localize eval`` scores)."""
    scores = classification_metrics(targets, predicted, num_labels, absent_labels_score=False)
    return scores["accuracy"], scores["macro_f1"]


def _score(per_user: dict[str, tuple[list[int], list[int]]], num_labels: int) -> tuple[float, float, float]:
    if not per_user:
        return 0.0, 0.0, 0.0
    scores = np.array([_user_scores(t, p, num_labels) for t, p in per_user.values()])
    accuracy, macro_f1 = float(scores[:, 0].mean()), float(scores[:, 1].mean())
    return accuracy, macro_f1, (accuracy + macro_f1) / 2


def _bootstrap_wins(results: list[CandidateResult], users: list[str]) -> dict[str, float]:
    """The share of user resamples (with replacement) on which each candidate scores best."""
    if not users:
        return {}
    rng = np.random.default_rng(0)
    table = np.array([[sum(r.per_user[u]) / 2 for u in users] for r in results])  # [candidate, user]
    picks = rng.integers(0, len(users), size=(BOOTSTRAP_RESAMPLES, len(users)))
    winners = table[:, picks].mean(axis=2).argmax(axis=0)
    return {r.name: float((winners == i).mean()) for i, r in enumerate(results)}
