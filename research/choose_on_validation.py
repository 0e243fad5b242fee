"""Research script: choose the users' head settings on validation rows, never on test.

Reads the ``--json`` outputs of ``head_recipe_grid.py`` (one per data set, the same variants in each) and prints, per
variant, the mean per-user validation and test accuracy / macro-F1 on each data set, then the variant whose mean
validation score ((accuracy + macro-F1) / 2, averaged over the data sets) is highest. Validation rows are held out
by text, so the prior never trained on them, and their figures are those of the model before its refit.

    python research/choose_on_validation.py /tmp/md-grid.json /tmp/hs-grid.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("grids", type=Path, nargs="+", help="head_recipe_grid.py --json files, one per data set")
    options = parser.parse_args()
    grids = {path.stem: json.loads(path.read_text()) for path in options.grids}
    variants = [name for name in next(iter(grids.values())) if all(name in grid for grid in grids.values())]
    scores = {}
    for name in variants:
        cells, validation = [], []
        for data_set, grid in grids.items():
            mean = {k: float(np.nanmean([row[k] for row in grid[name]]))
                    for k in ("val_accuracy", "val_macro_f1", "accuracy", "macro_f1")}
            validation.append((mean["val_accuracy"] + mean["val_macro_f1"]) / 2)
            cells.append(f"{data_set}: validation {mean['val_accuracy']:.3f} / {mean['val_macro_f1']:.3f}, "
                         f"test {mean['accuracy']:.3f} / {mean['macro_f1']:.3f}")
        scores[name] = float(np.mean(validation))
        print(f"{name}: mean validation score {scores[name]:.4f}; " + "; ".join(cells))
    best = max(scores, key=scores.get)
    print(f"chosen on validation: {best} ({scores[best]:.4f})")


if __name__ == "__main__":
    main()
