"""Research script: a task-tuned encoder as the task prior, per-user linear models on top.

Trains LoRA (r=8) on the six linear maps of the base's top two layers, with a linear head, on every train text's
soft label (the share of annotators who gave the positive label), then fits each user's logistic regression on
[tuned pooled embedding, prior logit] and scores the data set's protocol (users with >= 80 train / >= 15 test rows).
Outside the production Trainer on purpose: it measures whether the idea clears the targets before the platform
serves it. Usage:

    python research/task_tuned_prior.py --data ../shared/data/md_agreement [--epochs 3]
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score

from localize.activations import pad_hidden
from localize.base_model import get_base_model


class LoRALinear(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear, rank: int = 8, alpha: int = 16) -> None:
        super().__init__()
        self.linear, self.scale = linear, alpha / rank
        self.lora_a = torch.nn.Parameter(torch.randn(rank, linear.in_features) * 0.01)
        self.lora_b = torch.nn.Parameter(torch.zeros(linear.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


def load_rows(data: Path) -> dict[str, list[tuple[str, str, str]]]:
    rows: dict[str, list[tuple[str, str, str]]] = {}
    for split in ("train", "test"):
        with open(data / f"{split}.jsonl", encoding="utf-8") as handle:
            rows[split] = [(r["user"], r["text"], r["label"]) for r in map(json.loads, handle)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--tuned-layers", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rows = load_rows(args.data)
    counts = Counter(label for _, _, label in rows["train"])
    positive = min(counts, key=counts.get)  # the minority label
    texts = sorted({t for split in rows.values() for _, t, _ in split}, key=len)
    index = {t: i for i, t in enumerate(texts)}

    base = get_base_model()
    start = base.dims.num_layers - args.tuned_layers
    frozen: list[torch.Tensor] = []
    began = time.time()
    with torch.inference_mode():  # frozen layers once per text
        for s in range(0, len(texts), 64):
            ids, mask = base.tokenize(texts[s : s + 64])
            hidden = base.run_layers(base.embed(ids), mask, stop=start)
            frozen += [hidden[i, : int(mask[i].sum())].clone() for i in range(len(ids))]
    print(f"encoded {len(texts)} texts through layers 1-{start} in {time.time() - began:.0f} s", flush=True)

    # transformers' own layers (hf_model), so the LoRA wraps the very modules PEFT would.
    layers = torch.nn.ModuleList(copy.deepcopy(base.hf_model().encoder.layer[i]) for i in range(start, base.dims.num_layers))
    for parameter in layers.parameters():
        parameter.requires_grad_(False)
    for layer in layers:
        attention = layer.attention
        for owner, name in ((attention.self, "query"), (attention.self, "key"), (attention.self, "value"),
                            (attention.output, "dense"), (layer.intermediate, "dense"), (layer.output, "dense")):
            setattr(owner, name, LoRALinear(getattr(owner, name)))
    head = torch.nn.Linear(base.dims.hidden_size, 1)

    def tuned(batch: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, mask = pad_hidden([frozen[i].float() for i in batch])
        hidden = _run(layers, hidden, mask)
        pooled = base.pool(hidden, mask)
        return pooled, head(pooled).squeeze(-1)

    soft: dict[int, list[int]] = defaultdict(list)
    for _, text, label in rows["train"]:
        soft[index[text]].append(int(label == positive))
    train_ids = np.array(sorted(soft))
    targets = np.array([np.mean(soft[i]) for i in train_ids], dtype=np.float32)
    order = rng.permutation(len(train_ids))
    dev, fit = order[: len(order) // 10], order[len(order) // 10 :]
    trainable = [p for p in list(layers.parameters()) + list(head.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=0.01)
    best = (float("inf"), None)
    for epoch in range(args.epochs):
        layers.train()
        shuffled = fit[rng.permutation(len(fit))]
        for s in range(0, len(shuffled), 32):
            batch = shuffled[s : s + 32]
            _, logits = tuned(train_ids[batch])
            loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(targets[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        layers.eval()
        with torch.no_grad():
            dev_loss = np.mean([F.binary_cross_entropy_with_logits(tuned(train_ids[dev[s : s + 128]])[1],
                                torch.from_numpy(targets[dev[s : s + 128]])).item() for s in range(0, len(dev), 128)])
        print(f"epoch {epoch}: dev BCE {dev_loss:.4f} ({time.time() - began:.0f} s)", flush=True)
        if dev_loss < best[0]:
            best = (dev_loss, copy.deepcopy((layers.state_dict(), head.state_dict())))
    layers.load_state_dict(best[1][0])
    head.load_state_dict(best[1][1])
    layers.eval()
    features, scores = np.zeros((len(texts), base.dims.hidden_size), np.float32), np.zeros(len(texts), np.float32)
    with torch.no_grad():
        for s in range(0, len(texts), 128):
            batch = np.arange(s, min(s + 128, len(texts)))
            pooled, logits = tuned(batch)
            features[batch], scores[batch] = F.normalize(pooled, dim=-1).numpy(), logits.numpy()

    by_user = {split: defaultdict(list) for split in rows}
    for split, split_rows in rows.items():
        for user, text, label in split_rows:
            by_user[split][user].append((index[text], int(label == positive)))
    users = sorted(u for u, r in by_user["train"].items() if len(r) >= 80 and len(by_user["test"][u]) >= 15)
    for name, make in (("prior's head alone", None), ("per-user LR stacked on the prior's logit", 1.0)):
        accuracy, macro_f1 = [], []
        for user in users:
            test_ids, y_test = map(np.array, zip(*by_user["test"][user]))
            if make is None:
                predicted = (scores[test_ids] > 0).astype(int)
            else:
                train_ids_u, y_train = map(np.array, zip(*by_user["train"][user]))
                stack = lambda ids: np.hstack([features[ids], scores[ids, None]])  # noqa: E731
                if len(set(y_train)) < 2:
                    predicted = np.full(len(test_ids), y_train[0])
                else:
                    model = LogisticRegression(C=make, max_iter=3000).fit(stack(train_ids_u), y_train)
                    predicted = model.predict(stack(test_ids))
            accuracy.append(accuracy_score(y_test, predicted))
            macro_f1.append(f1_score(y_test, predicted, average="macro", zero_division=0))
        print(f"{name}: {len(users)} users, accuracy {np.mean(accuracy):.3f}, macro-F1 {np.mean(macro_f1):.3f}")


def _run(layers: torch.nn.ModuleList, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(hidden.dtype).min
    for layer in layers:
        out = layer(hidden, attention_mask=additive)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


if __name__ == "__main__":
    main()
