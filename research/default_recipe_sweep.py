"""The default recipe and variants of its per-user part on one data set, through the production Trainer.

Trains the task prior once with ``TrainingArguments().for_prior()`` on every user's pooled train rows (saved to
``--prior FILE`` and reused on later runs), then, for the default and each ``--variant k=v[,k=v]``, trains every
qualifying user's head on their train rows and scores their test rows (mean per-user accuracy / macro-F1), the
protocol of ``localize eval``. Usage:

    python research/default_recipe_sweep.py --data ../shared/data/md_agreement --prior md-prior.pt \\
        --variant class_weighting=sqrt --variant refit_on_all=True
"""
from __future__ import annotations

import argparse
import dataclasses
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
from localize.training_args import TrainingArguments


def _value(args: TrainingArguments, key: str, raw: str):  # noqa: ANN202
    current = getattr(args, key)
    if isinstance(current, bool):
        return raw == "True"
    return type(current)(raw) if current is not None else float(raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--prior", type=Path, required=True, help="where the trained prior is kept between runs")
    parser.add_argument("--variant", action="append", default=[], help="k=v[,k=v] overriding the default")
    parser.add_argument("--prior-set", default="", help="k=v[,k=v] overriding the default for the prior")
    options = parser.parse_args()
    data = load_eval_data(options.data)
    base = get_base_model()
    cache = ActivationCache(max_bytes=12 << 30)
    args = TrainingArguments()
    prior_args = dataclasses.replace(args, **{k: _value(args, k, v) for k, v in
                                              (pair.split("=", 1) for pair in options.prior_set.split(",") if pair)})
    started = time.perf_counter()
    if options.prior.exists():
        saved = torch.load(options.prior, weights_only=False)
        prior = AdapterWeights(make_method(saved["method"], saved["options"], base.dims), saved["params"],
                               saved["head"], saved["labels"], base.dims.model_id)
    else:
        trainer = Trainer(base, prior_args.for_prior(), [r.text for r in data.train], [r.label for r in data.train],
                          data.labels, cache=cache,
                          progress=lambda f, m: print(f"{time.perf_counter() - started:.0f}s prior {m}", flush=True))
        prior = trainer.train()
        torch.save({"method": prior.method.name, "options": prior.method.config.to_dict(), "params": prior.params,
                    "head": prior.head, "labels": prior.labels}, options.prior)
    variants = {"default": args}
    for spec in options.variant:
        variants[spec] = dataclasses.replace(args, **{k: _value(args, k, v) for k, v in
                                                      (pair.split("=", 1) for pair in spec.split(","))})
    for name, variant in variants.items():
        accuracy, macro_f1, seconds = [], [], []
        for user in data.users:
            train, test = data.rows(user, "train"), data.rows(user, "test")
            begun = time.perf_counter()
            trainer = Trainer(base, variant, [r.text for r in train], [r.label for r in train], data.labels,
                              init=prior, cache=cache)
            trainer.train()
            seconds.append(time.perf_counter() - begun)
            scores = user_metrics(data.label_index(test), trainer.predict_proba([r.text for r in test]).numpy().argmax(1))
            accuracy.append(scores[0])
            macro_f1.append(scores[1])
        print(f"{name}: {len(accuracy)} users, accuracy {np.mean(accuracy):.4f}, macro-F1 {np.mean(macro_f1):.4f}, "
              f"{np.mean(seconds):.2f} s per user", flush=True)


if __name__ == "__main__":
    main()
