"""A held-out data set for `localize eval`: finance tweets labelled by traders with different positions.

The default recipe was chosen on MD-Agreement and HS-Brexit; this writes a third data set in their format (one JSON
line per user x item with ``split``) from the demo's tweet generator, so the recipe can be checked on data it was not
tuned on: three labels instead of two, and disagreement that is systematic (a long and a short trader read the same
tweet in opposite ways) plus a share of random label flips. Everything is seeded and offline.

Usage:

    python research/traders_dataset.py --out /tmp/traders
    localize eval --data /tmp/traders --report reports/held_out --quick
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

from localize.demo_data import LABELS, DemoUser, generate_tweets, label_for, write_jsonl

TRADERS = [
    DemoUser("long_gold_short_oil", {"gold": +1, "oil": -1}),
    DemoUser("short_gold_long_oil", {"gold": -1, "oil": +1}),
    DemoUser("long_everything", {"gold": +1, "oil": +1, "bitcoin": +1, "equities": +1}),
    DemoUser("gold_bug", {"gold": +1, "silver": +1, "dollar": -1}),
    DemoUser("crypto_and_tech", {"bitcoin": +1, "equities": +1}),
    DemoUser("energy_short", {"oil": -1, "natgas": -1}),
    DemoUser("macro_bear", {"equities": -1, "copper": -1, "dollar": +1}),
    DemoUser("oil_only", {"oil": +1}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for train.jsonl and test.jsonl")
    parser.add_argument("--items", type=int, default=500, help="tweets, each labelled by every trader")
    parser.add_argument("--test-share", type=float, default=0.2)
    parser.add_argument("--noise", type=float, default=0.1, help="share of labels flipped to another label")
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()
    tweets = generate_tweets(options.items, seed=options.seed)
    rng = random.Random(f"traders-{options.seed}")
    test_items = set(rng.sample(range(len(tweets)), round(options.test_share * len(tweets))))
    rows = {"train": [], "test": []}
    for index, tweet in enumerate(tweets):
        split = "test" if index in test_items else "train"
        for trader in TRADERS:
            label = label_for(trader, tweet)
            if rng.random() < options.noise:
                label = rng.choice([other for other in LABELS if other != label])
            rows[split].append({"user": trader.name, "item": f"traders-{index:05d}", "text": tweet.text,
                                "label": label, "split": split})
    for split, split_rows in rows.items():
        write_jsonl(split_rows, options.out / f"{split}.jsonl")
    print(f"wrote {len(rows['train'])} train and {len(rows['test'])} test rows for {len(TRADERS)} traders "
          f"to {options.out}")


if __name__ == "__main__":
    main()
