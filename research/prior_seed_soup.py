"""A task prior's seed spread, and whether averaging the LoRA updates of priors trained with several seeds (a
"soup": one LoRA of rank K * r whose update is the mean of theirs, free at serving) serves users' heads better than
one seed. Users' MAP heads fitted on each prior's encoding of their train rows, scored on their test rows.

    python research/prior_seed_soup.py --data ../shared/data/hs_brexit --last-epoch 4 --seeds 0 1 2

Status: not adopted (reports/findings.md, round 11): the soup scores the mean of its seeds, no more.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from localize.activations import ActivationCache
from localize.base_model import get_base_model
from localize.evaluation.data import load_eval_data
from localize.evaluation.harness import user_metrics
from localize.map_head import class_weights_for, solve_map_head
from localize.training import Trainer
from localize.training_args import TrainingArguments


def soup(priors):  # noqa: ANN001, ANN201
    """The LoRA whose update is the mean of ``priors``' updates: their A stacked, their B side by side over K, at
    alpha K times theirs so that alpha / r stays; heads averaged."""
    k = len(priors)
    first = priors[0]
    params = {}
    for name in first.params:
        parts = [p.params[name] for p in priors]
        if name.endswith("lora_A.weight"):
            params[name] = torch.cat(parts, 0)
        elif name.endswith("lora_B.weight"):
            params[name] = torch.cat(parts, 1) / k
        else:
            params[name] = sum(parts) / k
    head = {n: sum(p.head[n] for p in priors) / k for n in first.head}
    config = dataclasses.replace(first.method.config, r=first.method.config.r * k, alpha=first.method.config.alpha * k)
    return config, params, head


def souped_prior(priors):  # noqa: ANN001, ANN201
    """The soup of ``priors`` as a prior to encode with (also used by prior_seed_ensemble.py and
    demo_on_new_sentences.py)."""
    from localize.adapters.base import make_method

    config, params, head = soup(priors)
    souped = dataclasses.replace(priors[0], params=params, head=head, slot=None, _fingerprint=None)
    souped.method = make_method(priors[0].method.name, config.to_dict(), priors[0].method.dims)
    return souped


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--last-epoch", type=int, default=None)
    o = ap.parse_args()
    data, base, cache = load_eval_data(o.data), get_base_model(), ActivationCache(max_bytes=4 << 30)
    rows = data.train
    texts = sorted({r.text for r in data.train} | {r.text for r in data.test})
    priors = []
    for seed in o.seeds:
        args = TrainingArguments(seed=seed, prior_last_epoch=o.last_epoch)
        t = time.time()
        tr = Trainer(base, args.for_prior(), [r.text for r in rows], [r.label for r in rows], data.labels,
                     cache=cache, annotators=[r.user for r in rows])
        priors.append(tr.train())
        best = priors[-1].meta.get("metrics", {}).get("best_epoch")
        print(f"seed {seed}: prior {time.time() - t:.0f} s, best epoch {best}", flush=True)
    souped = souped_prior(priors)
    args = TrainingArguments()
    results = {}
    for name, prior in [(f"seed {s}", p) for s, p in zip(o.seeds, priors)] + [("soup", souped)]:
        encoded = dict(zip(texts, cache.encoded(base, prior, texts, batch_size=128)))

        def xy(some, encoded=encoded):  # noqa: ANN001, ANN202
            return (torch.stack([encoded[r.text] for r in some]).float(),
                    torch.tensor([data.labels.index(r.label) for r in some]))

        scores = []
        for user in data.users:
            if len(data.rows(user, "train")) < 80 or len(data.rows(user, "test")) < 15:
                continue
            x, y = xy(data.rows(user, "train"))
            tx, ty = xy(data.rows(user, "test"))
            counts = np.bincount(y.numpy(), minlength=len(data.labels)).astype(float)
            w = torch.tensor(class_weights_for(counts, args.class_weighting), dtype=torch.float32)
            center = {k: v.detach().float() for k, v in prior.head.items()}
            weight, bias = solve_map_head(x, y, center, strength=args.head_prior_strength, class_weights=w)
            scores.append(user_metrics(ty.numpy(), (tx @ weight.T + bias).argmax(1).numpy()))
        a, f = np.array(scores).mean(0)
        results[name] = (a, f)
        print(f"{name}: {len(scores)} users, accuracy {a:.3f}, macro-F1 {f:.3f}", flush=True)
    single = np.array([v for k, v in results.items() if k != "soup"])
    print(f"mean of single seeds: {single[:,0].mean():.3f} / {single[:,1].mean():.3f}")


if __name__ == "__main__":
    main()
