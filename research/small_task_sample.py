"""A small task cut from a real per-annotator data set, in the same format, for `localize eval`: N train and M test
items drawn at random, every label of those items kept. It stands in for tasks nobody here has, where every user
labels the same few hundred texts (on HS-Brexit every annotator labels every tweet, so each user keeps N + M
labels); the draw is seeded, so a run can be repeated. The real data stays outside the repository.

    python research/small_task_sample.py --data ../shared/data/hs_brexit --train-items 150 --test-items 50 \
        --seed 2026 --out /tmp/hs_small_2026
    localize eval --data /tmp/hs_small_2026 --out /tmp/hs_small_2026.json

``--min-annotators K`` draws only items that K or more annotators labelled (ConvAbuse: most items have three).

Status: current (reports/findings.md, round 2 and round 21).
"""
from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path


def read(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def sample(data: Path, train_items: int, test_items: int, seed: int, min_annotators: int) -> dict[str, list[dict]]:
    out = {}
    rng = random.Random(seed)
    for split, wanted in (("train", train_items), ("test", test_items)):
        rows = read(data / f"{split}.jsonl")
        counts = Counter(r["item"] for r in rows)
        items = sorted(item for item, n in counts.items() if n >= min_annotators)
        if len(items) < wanted:
            raise SystemExit(f"{split}: only {len(items)} items have {min_annotators}+ labels; asked for {wanted}")
        keep = set(rng.sample(items, wanted))
        out[split] = [r for r in rows if r["item"] in keep]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with train.jsonl and test.jsonl")
    parser.add_argument("--train-items", type=int, default=150)
    parser.add_argument("--test-items", type=int, default=50)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--min-annotators", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    parts = sample(args.data, args.train_items, args.test_items, args.seed, args.min_annotators)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in parts.items():
        with (args.out / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in rows)
        users = Counter(r["user"] for r in rows)
        print(f"{split}: {len(rows)} rows, {len({r['item'] for r in rows})} items, users {dict(sorted(users.items()))}")


if __name__ == "__main__":
    main()
