"""Research script: the default recipe's per-user part under several head settings, on one prior.

Trains the task prior once (``TrainingArguments().for_prior()`` plus ``--prior-set`` overrides) on every user's
pooled train rows, keeps it in ``--prior FILE`` for later runs, then trains every qualifying user's head under the
default and each ``--variant k=v[;k=v]`` through the production Trainer and prints, per variant, the mean per-user
test accuracy / macro-F1 and the mean per-user validation accuracy / macro-F1 (the rows a task-level choice would
read). With the default ``validation_split=by_text`` the prior never trains on a user's validation rows.

    python research/head_recipe_grid.py --data ../shared/data/hs_brexit --prior /tmp/hs-prior.pt \\
        --variant "class_weighting=balanced" --json /tmp/hs-grid.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from localize.adapters import make_method

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.engine import AdapterWeights
from localize.evaluation.data import load_eval_data
from localize.evaluation.harness import user_metrics
from localize.training import Trainer
from localize.training_args import TrainingArguments, apply_overrides


def _arguments(base: TrainingArguments, spec: str) -> TrainingArguments:
    values = apply_overrides(base.to_dict(), [pair for pair in spec.split(";") if pair])
    return TrainingArguments.from_dict(values)


def load_or_train_prior(path: Path, args: TrainingArguments, data, base, cache, log) -> AdapterWeights:  # noqa: ANN001
    if path.exists():
        saved = torch.load(path, weights_only=False)
        if saved.get("args") == args.to_dict() or saved.get("args") is None:
            return AdapterWeights(make_method(saved["method"], saved["options"], base.dims), saved["params"],
                                  saved["head"], saved["labels"], base.dims.model_id, meta=saved.get("meta", {}))
        log(f"{path} was trained with other arguments: training again")
    trainer = Trainer(base, args, [r.text for r in data.train], [r.label for r in data.train], data.labels,
                      cache=cache, progress=lambda f, m: log(f"prior {m}"), annotators=[r.user for r in data.train])
    prior = trainer.train()
    torch.save({"method": prior.method.name, "options": prior.method.config.to_dict(), "params": prior.params,
                "head": prior.head, "labels": prior.labels, "args": args.to_dict(),
                "meta": {"metrics": trainer.metrics}}, path)
    return prior


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--prior", type=Path, required=True, help="where the trained prior is kept between runs")
    parser.add_argument("--prior-set", default="", help="k=v[;k=v] overriding the default for the prior")
    parser.add_argument("--set", default="", help="k=v[;k=v] overriding the default for every variant")
    parser.add_argument("--variant", action="append", default=[], help="k=v[;k=v] on top of --set")
    parser.add_argument("--users", type=int, default=None, help="only the first N users by id")
    parser.add_argument("--prior-only", action="store_true")
    parser.add_argument("--json", type=Path, default=None, help="per-user figures of every variant")
    options = parser.parse_args()
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f}s] {message}", flush=True)

    data = load_eval_data(options.data)
    base = get_base_model()
    cache = ActivationCache(max_bytes=12 << 30)
    common = _arguments(TrainingArguments(), options.set)
    prior_args = _arguments(common, options.prior_set).for_prior()
    prior = load_or_train_prior(options.prior, prior_args, data, base, cache, log)
    log(f"prior ready: {prior.meta.get('metrics', {})}")
    if options.prior_only:
        return
    users = data.users[: options.users] if options.users else data.users
    variants = {"default": common} | {spec: _arguments(common, spec) for spec in options.variant}
    output = {}
    for name, args in variants.items():
        rows = []
        for user in users:
            train, test = data.rows(user, "train"), data.rows(user, "test")
            begun = time.perf_counter()
            trainer = Trainer(base, args, [r.text for r in train], [r.label for r in train], data.labels,
                              init=prior, cache=cache)
            trainer.train()
            seconds = time.perf_counter() - begun
            accuracy, macro_f1 = user_metrics(data.label_index(test),
                                              trainer.predict_proba([r.text for r in test]).numpy().argmax(1))
            val = (float("nan"), float("nan"))
            if trainer.val_split is not None:
                val = user_metrics(trainer.val_split.targets.numpy(), trainer.val_probabilities.numpy().argmax(1))
            rows.append({"user": user, "accuracy": accuracy, "macro_f1": macro_f1, "val_accuracy": val[0],
                         "val_macro_f1": val[1], "seconds": seconds, "best_epoch": trainer.metrics.get("best_epoch")})
        output[name] = rows
        mean = {k: float(np.nanmean([r[k] for r in rows])) for k in ("accuracy", "macro_f1", "val_accuracy",
                                                                     "val_macro_f1", "seconds")}
        log(f"{name}: {len(rows)} users, test {mean['accuracy']:.4f} / {mean['macro_f1']:.4f}, validation "
            f"{mean['val_accuracy']:.4f} / {mean['val_macro_f1']:.4f}, {mean['seconds']:.2f} s per user")
    if options.json:
        options.json.write_text(json.dumps(output, indent=1))


if __name__ == "__main__":
    main()
