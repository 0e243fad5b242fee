"""Training adapters side by side, member by member (a mixin of :class:`~localize.training.Trainer`).

Several task priors (``prior_members``) are a ``lora_stack``: each member is the prior its seed trains alone, and
the stack's head is their heads' mean. A user's head on such a prior is the head the user would get on each prior
alone, served as one head on their encodings side by side whose logits are the mean of theirs
(:func:`~localize.head_ensemble.merge_heads_on_blocks`). Either way the members train as trainers of their own, and
the stack is scored and calibrated once, on what the members said on the validation rows before any refit.

A stack's first members may come already trained (``trained_members``): the recipe choice trains ``prior-head``'s
prior, which is exactly the first member of the ``prior3-`` candidates' stack of the same seed, so it is not trained
twice.
"""
from __future__ import annotations

import dataclasses
import time

import torch

from localize.adapters import get_method, make_method
from localize.adapters.head import UP
from localize.head_ensemble import merge_heads_on_blocks
from localize.epoch_loop import describe_scores
from localize.label_metrics import classification_metrics
from localize.training_args import TrainingArguments
from localize.training_rows import loss_targets


class StackTraining:
    """What :class:`~localize.training.Trainer` does when its adapter, or the prior its head reads, is a stack."""

    def _fits_members(self) -> bool:
        """Trains the stack member by member when there is one to train (the adapter, or a head on a stacked
        prior); whether it did."""
        if self.adapter.method.members(self.params) is not None:
            self._fit_members()
            return True
        if self.adapter.encoder is not None and self.adapter.encoder.members() is not None:
            self._fit_on_members()
            return True
        return False

    def _fit_members(self) -> None:
        """Adapters side by side (several task priors): each member trains alone, as its own method with its own
        head, from seeds ``seed``, ``seed + 1``, ... (so the first is the single adapter of this seed), without
        calibration; the stack then serves their heads' mean logits and is calibrated as one."""
        started = time.perf_counter()
        stack = self.adapter.method
        members = stack.members(self.params)
        texts, labels, annotators = self._rows
        trained = []
        for index, (member, _) in enumerate(members):
            args = dataclasses.replace(self.args, method=member.name, method_options=member.config.to_dict(),
                                       seed=self.args.seed + index, calibrate=False, decision_offsets=None)
            prefix = f"{index + 1} of {len(members)}: "
            if index < len(self.trained_members):
                trained.append(self._reusable_member(self.trained_members[index], args))
                self.progress((index + 1) / len(members), prefix + "trained already")
                continue
            trainer = type(self)(self.base, args, texts, labels, self.label_set, init=self.init, cache=self.cache,
                                 annotators=annotators,
                                 progress=lambda fraction, message, done=index, prefix=prefix: self.progress(
                                     (done + fraction) / len(members), prefix + message))
            trainer.train()
            trained.append(trainer)
        self.adapter.params, self.adapter.head = stack.combine([(t.params, t.head) for t in trained])
        self._finish_members(trained, started)

    def _reusable_member(self, trained: StackTraining, args: TrainingArguments) -> StackTraining:
        """``trained``, if it is what this stack would train as the member of ``args``; otherwise an error that
        names what differs (a member trained otherwise would make the stack other than its seeds say)."""
        differs = [what for what, same in (
            ("other training arguments", _effective(trained.args) == _effective(args)),
            ("other rows", trained._rows == self._rows),
            ("other starting weights", trained.init is self.init),
            ("another base model", trained.base is self.base),
            ("not trained yet", bool(trained.metrics)),
        ) if not same]
        if differs:
            raise ValueError(f"a member given to a stack of {self.adapter.method.config.members} priors is not the "
                             f"member it would train with seed {args.seed}: {', '.join(differs)}")
        return trained

    def _fit_on_members(self) -> None:
        """A head on several task priors side by side: on each prior the head this user would get on it alone (its
        own trainer: a MAP head, or MLP heads by epochs), uncalibrated, from seeds ``seed``, ``seed + 1000``, ...;
        served as one head whose logits are their mean, calibrated as one."""
        started = time.perf_counter()
        priors = self.init.members()  # the prior as given: its head too (the adapter keeps only its encoder)
        texts, labels, _ = self._rows
        trained = []
        for index, prior in enumerate(priors):
            args = dataclasses.replace(self.args, seed=self.args.seed + 1000 * index, calibrate=False,
                                       decision_offsets=None)
            prefix = f"on prior {index + 1} of {len(priors)}: "
            trainer = type(self)(self.base, args, texts, labels, self.label_set, init=prior, cache=self.cache,
                                 progress=lambda fraction, message, done=index, prefix=prefix: self.progress(
                                     (done + fraction) / len(priors), prefix + message))
            trainer.train()
            trained.append(trainer)
        params, head = merge_heads_on_blocks([(t.params, t.head) for t in trained], priors[0].method.pooled_width)
        self.adapter.params, self.adapter.head = params, head
        if params:  # one MLP as wide as the members' together
            self.adapter.method = make_method("head", {**self.adapter.method.config.to_dict(),
                                                       "hidden": params[UP].shape[0]}, self.base.dims)
        self._finish_members(trained, started)

    def _finish_members(self, trained: list, started: float) -> None:
        """The record of a stack trained member by member, its validation scores as served, and its calibration."""
        self.history = trained[0].history
        best_epochs = [t.metrics.get("best_epoch") for t in trained]
        self.metrics = {
            **{k: v for k, v in trained[0].metrics.items() if k not in ("val_loss", "val_accuracy", "val_macro_f1")},
            "val_rows": 0 if self.val_split is None else len(self.val_split.texts),  # activation checks read it
            # The latest member's: a prior trained again on every text stops there (the recipe choice).
            "best_epoch": max(best_epochs) if None not in best_epochs else None,
            "members": [{k: t.metrics[k] for k in ("best_epoch", "val_loss", "val_accuracy", "val_macro_f1",
                                                   "train_seconds") if k in t.metrics} for t in trained],
        }
        if self.val_split is not None:
            # What the members said on the validation rows before any refit on them (uncalibrated, so the log of
            # their probabilities is their logits up to a constant per row): their mean is the stack's logits there.
            same_rows = all(t.val_split is not None and t.val_split.texts == self.val_split.texts
                            and t.val_probabilities is not None for t in trained)
            logits = (torch.stack([t.val_probabilities.clamp_min(1e-12).log() for t in trained]).mean(0)
                      if same_rows else self._all_logits(self.val_split).float().cpu())
            val = classification_metrics(self.val_split.targets.tolist(), logits.argmax(-1).tolist(),
                                         len(self.label_set))
            # The cross-entropy of the label (or, for a prior, the label shares); a prior's annotators' own heads
            # are its members' and are not part of the stack.
            loss = torch.nn.functional.cross_entropy(logits, loss_targets(self.val_split, slice(None)))
            self.metrics.update({"val_loss": float(loss),
                                 "val_accuracy": val["accuracy"], "val_macro_f1": val["macro_f1"]})
            self._calibrate_on_validation(logits)
        else:
            self._calibrate_on_validation()
        self.adapter.fold_into_head(self.temperature, self.decision_offsets)
        self.metrics["train_seconds"] = time.perf_counter() - started
        self.progress(1.0, "done: " + describe_scores(self.metrics))


def _effective(args: TrainingArguments) -> TrainingArguments:
    """``args`` with its method's options as the method reads them (defaults filled in), for comparison."""
    options = get_method(args.method).config_class.from_dict(args.method_options).to_dict()
    return dataclasses.replace(args, method_options=options)
