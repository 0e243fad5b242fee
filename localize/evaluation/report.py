"""``localize eval --report DIR``: every recipe and baseline on each data set, learning curves and calibration,
written as ``accuracy.md`` plus PNG plots and ``accuracy.json`` (the numbers behind them)."""
from __future__ import annotations

import json
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from localize.base_model import BaseModel
from localize.evaluation.baselines import BASELINES
from localize.evaluation.calibration import (
    coverage_accuracy,
    expected_calibration_error,
    per_user_abstention,
    reliability,
)
from localize.evaluation.data import EvalData
from localize.evaluation.harness import Harness, MethodResult, Recipe

CURVE_SIZES = (25, 50, 100, 200, None)  # None: all of the user's train labels
CURVE_BASELINES = ("majority", "per_user_lr", "stacked_lr")
CURVE_USERS = 32  # learning curves cost five trainings per user: the first users by id
ABSTAIN_TARGETS = (0.85, 0.90, 0.95)
TARGETS = {"md_agreement": {"accuracy": 0.80, "macro_f1": 0.72}, "hs_brexit": {"macro_f1": 0.72}}


def _subset(result: MethodResult, users: list[str]) -> MethodResult:
    keep = set(users)
    return MethodResult(result.name, result.kind, result.description, [u for u in result.users if u.user in keep],
                        result.prior_seconds)


def evaluate_data_set(
    data: EvalData,
    base: BaseModel,
    recipes: list[Recipe],
    *,
    reference: bool = True,
    curve_sizes: tuple[int | None, ...] = CURVE_SIZES,
    curve_users: int | None = None,
    saved_encodings: Path | None = None,
    write_encodings: bool = True,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """The recipes of one data set; with ``reference`` (the first recipe is then the default) also the baselines,
    learning curves (on the first ``curve_users`` users) and calibration."""
    started = time.perf_counter()
    harness = Harness(data, base, progress=progress)
    encode_seconds = harness.encode_all(saved_encodings, write=write_encodings)
    results: list[MethodResult] = []
    for name in BASELINES if reference else ():
        progress(f"{data.name}: baseline {name}")
        results.append(harness.run_baseline(name))
    for recipe in recipes:
        progress(f"{data.name}: recipe {recipe.name}")
        results.append(harness.run_recipe(recipe))
    entry: dict[str, Any] = {
        "data_set": data.name,
        "default": recipes[0].name if reference else None,
        "users": len(data.users),
        "labels": data.labels,
        "train_rows": len(data.train),
        "test_rows": len(data.test),
        "encode_seconds": encode_seconds,
        "results": [r.to_dict() for r in results],
    }
    if not reference:
        entry["seconds"] = time.perf_counter() - started
        return entry
    default = next(r for r in results if r.name == recipes[0].name)

    curve_data = data if not curve_users else EvalData(name=data.name, train=data.train, test=data.test,
                                                       labels=data.labels, users=data.users[:curve_users])
    curves: dict[str, list[dict[str, Any]]] = {}
    # No point's prior may see labels its users are denied. Where the other users hold most labels, the curve's users
    # join a task whose prior was trained without them, as a new user does (one prior for every point); otherwise
    # each point's prior trains on that point's rows.
    curve_users_set = set(curve_data.users)
    others = [r for r in data.train if r.user not in curve_users_set]
    leave_out = 2 * len(others) >= len(data.train)
    shared_priors: dict[str, Any] = {}
    for size in curve_sizes:
        point_data = curve_data if size is None else curve_data.with_train_limit(size)
        point = Harness(point_data, base, cache=harness.cache, progress=progress,
                        prior_rows=others if leave_out else None, priors=shared_priors if leave_out else None)
        progress(f"{data.name}: learning curve at {size or 'all'} labels per user")
        if size is None and not (leave_out and recipes[0].args.init_from_prior):  # the runs above, on these users
            runs = [_subset(r, curve_data.users) for r in results if r.name in (default.name, *CURVE_BASELINES)]
        elif size is None:
            runs = [point.run_recipe(recipes[0]),
                    *(_subset(r, curve_data.users) for r in results if r.name in CURVE_BASELINES)]
        else:
            runs = [point.run_recipe(recipes[0]), *(point.run_baseline(name) for name in CURVE_BASELINES)]
        for run in runs:
            summary = run.summary()
            curves.setdefault(run.name, []).append({
                "labels": size, "mean_train_labels": float(np.mean([u.n_train for u in run.users])),
                "mean_accuracy": summary["mean_accuracy"], "mean_macro_f1": summary["mean_macro_f1"]})

    test = {u.user: (default.test_probabilities[u.user], np.array(data.label_index(data.rows(u.user, "test"))))
            for u in default.users}
    pooled_p = np.concatenate([p for p, _ in test.values()])
    pooled_y = np.concatenate([y for _, y in test.values()])
    thresholds = np.round(np.arange(0.5, 1.0, 0.025), 3)
    coverage, answered_accuracy = coverage_accuracy(test, thresholds)
    calibration = {
        "method": default.name,
        "ece": expected_calibration_error(pooled_p, pooled_y),
        "ece_validation": expected_calibration_error(*(np.concatenate(x) for x in zip(*default.validation.values())))
        if default.validation else None,
        "reliability": reliability(pooled_p, pooled_y),
        "curve": [{"threshold": float(t), "mean_coverage": float(c), "mean_accuracy_answered": float(a)}
                  for t, c, a in zip(thresholds, coverage, answered_accuracy)],
        "per_user_thresholds": [per_user_abstention(default.validation, test, target) for target in ABSTAIN_TARGETS],
    }
    entry.update({"curve_users": len(curve_data.users), "curve_prior": "others" if leave_out else "per point",
                  "learning_curves": curves, "calibration": calibration,
                  "seconds": time.perf_counter() - started})
    return entry


# -- writing --------------------------------------------------------------------------------------------------------
def _plot_learning_curves(entry: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, points in entry["learning_curves"].items():
        x = [p["mean_train_labels"] for p in points]
        for axis, key in zip(axes, ("mean_accuracy", "mean_macro_f1")):
            width = 2.5 if name == entry["default"] else 1.2
            axis.plot(x, [p[key] for p in points], marker="o", label=name, linewidth=width)
    for axis, title in zip(axes, ("mean per-user accuracy", "mean per-user macro-F1")):
        axis.set_xscale("log")
        axis.set_xlabel("train labels per user (25, 50, 100, 200, all)")
        axis.set_title(f"{entry['data_set']}: {title}")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_calibration(entry: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calibration = entry["calibration"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    confidence, accuracy, _ = zip(*calibration["reliability"])
    axes[0].plot([0.5, 1], [0.5, 1], linestyle="--", color="grey", label="perfect calibration")
    axes[0].plot(confidence, accuracy, marker="o", label=f"{calibration['method']} (ECE {calibration['ece']:.3f})")
    axes[0].set_xlabel("confidence of the predicted label")
    axes[0].set_ylabel("accuracy")
    axes[0].set_title(f"{entry['data_set']}: reliability (test rows, all users)")
    axes[0].legend(fontsize=8)
    curve = calibration["curve"]
    axes[1].plot([p["mean_coverage"] for p in curve], [p["mean_accuracy_answered"] for p in curve], marker=".",
                 label="one threshold for all (0.50 .. 0.975)")
    for point in calibration["per_user_thresholds"]:
        axes[1].scatter(point["mean_coverage"], point["mean_accuracy_answered"], zorder=3,
                        label=f"per-user threshold for {point['target_accuracy']:.0%} on validation")
    axes[1].set_xlabel("mean per-user coverage (share of rows answered)")
    axes[1].set_ylabel("mean per-user accuracy on answered rows")
    axes[1].set_title(f"{entry['data_set']}: abstain below a confidence threshold")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _bytes(value: int) -> str:
    return f"{value:,}" if value else "0"


def _verdict(entry: dict[str, Any]) -> list[str]:
    rows = {r["summary"]["name"]: r["summary"] for r in entry["results"]}
    default = rows[entry["default"]]
    baselines = [s for s in rows.values() if s["kind"] == "baseline"]
    lines = []
    for metric, label in (("mean_accuracy", "accuracy"), ("mean_macro_f1", "macro-F1")):
        best = max(baselines, key=lambda s: s[metric])
        ok = default[metric] >= best[metric]
        lines.append(f"- {label}: default {default[metric]:.3f} vs best baseline {best['name']} {best[metric]:.3f}: "
                     f"**{'met' if ok else 'NOT met'}**")
    for metric, target in TARGETS.get(entry["data_set"], {}).items():
        value = default["mean_" + metric]
        lines.append(f"- target {metric.replace('_', '-')} >= {target:.2f}: {value:.3f}: "
                     f"**{'met' if value >= target else 'NOT met'}**")
    return lines


def write_report(entries: list[dict[str, Any]], out_dir: Path, *, command: str, notes: str = "",
                 min_train: int = 80, min_test: int = 15) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Accuracy on real people's labels",
        "",
        f"Generated by `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.machine()}, CPU). Protocol: the data set's item-level split; users with >= {min_train} train and "
        f">= {min_test} test labels; the mean over users of accuracy and of macro-F1 (over the labels present in the "
        "user's test rows or predictions); validation rows come out of each user's train rows, never test, and "
        "are held out by text, so a task prior never trains on a text its users validate on.",
        "",
    ]
    if notes:
        lines += [notes, ""]
    if (out_dir / "findings.md").is_file():  # the hand-written analysis kept next to the generated report
        lines += ["What the numbers mean, how the default was chosen and what else was tried (and did not work): "
                  "[findings.md](findings.md).", ""]
    for entry in entries:
        name = entry["data_set"]
        _plot_learning_curves(entry, out_dir / f"{name}_learning_curves.png")
        _plot_calibration(entry, out_dir / f"{name}_calibration.png")
        lines += [
            f"## {name}",
            "",
            f"{entry['users']} users scored, labels {entry['labels']}, {entry['train_rows']:,} train / "
            f"{entry['test_rows']:,} test rows; encoding every distinct text once took "
            f"{entry['encode_seconds']:.0f} s; "
            f"the whole data set {entry['seconds'] / 60:.1f} min. Default recipe: **{entry['default']}**.",
            "",
            *_verdict(entry),
            "",
            "| method | kind | users | accuracy | macro-F1 | default on the same users | train s / user | "
            "prior s (once) | adapter bytes | what it is |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        default_users = {u["user"]: u for r in entry["results"] if r["summary"]["name"] == entry["default"]
                         for u in r["users"]}
        for result in entry["results"]:
            s = result["summary"]
            bold = "**" if s["name"] == entry["default"] else ""
            same = [default_users[u["user"]] for u in result["users"]]
            subset = len(same) < len(default_users)
            reference = (f"{np.mean([u['accuracy'] for u in same]):.3f} / {np.mean([u['macro_f1'] for u in same]):.3f}"
                         if subset else "")
            # a variant capped at the first N users that scored every user is not a subset: say nothing of N
            description = s["description"] if subset else re.sub(r"; first \d+ users$", "", s["description"])
            lines.append(
                f"| {bold}{s['name']}{bold} | {s['kind']} | {s['users']} | {bold}{_fmt(s['mean_accuracy'])}{bold} | "
                f"{bold}{_fmt(s['mean_macro_f1'])}{bold} | {reference} | {_fmt(s['train_seconds_per_user'], 2)} | "
                f"{_fmt(s['prior_seconds'], 0)} | {_bytes(s['adapter_bytes'])} | {description} |")
        calibration = entry["calibration"]
        lines += [
            "",
            f"### {name}: learning curves",
            "",
            f"![learning curves]({name}_learning_curves.png)",
            "",
            f"The first {entry['curve_users']} users by id; their train labels cut to N at random. "
            + ("Recipes that start from a task prior read one trained without these users' labels (on everyone "
               "else's), as a user who joins a task does." if entry.get("curve_prior") == "others" else
               "A recipe's task prior is trained at each point on that point's rows."),
            "",
            "| method | " + " | ".join(str(p["labels"] or "all") for p in next(iter(entry["learning_curves"].values())))
            + " |",
            "|---|" + "---|" * len(next(iter(entry["learning_curves"].values()))),
        ]
        for method, points in entry["learning_curves"].items():
            lines.append(f"| {method} | " + " | ".join(f"{p['mean_accuracy']:.3f} / {p['mean_macro_f1']:.3f}"
                                                       for p in points) + " |")
        lines += [
            "",
            f"Cells: mean accuracy / mean macro-F1 over the first {entry['curve_users']} users by id. A user with "
            "fewer labels than a point keeps all of theirs.",
            "",
            f"### {name}: calibration and abstaining",
            "",
            f"![calibration]({name}_calibration.png)",
            "",
            f"Expected calibration error of **{calibration['method']}** (15 bins, top label): "
            f"**{calibration['ece']:.3f}** on test rows"
            + (f", {calibration['ece_validation']:.3f} on the users' validation rows" if calibration["ece_validation"]
               is not None else "") + ".",
            "",
            "| per-user threshold picked on the user's validation rows for | users | mean test coverage | "
            "mean test accuracy on answered rows |",
            "|---|---|---|---|",
        ]
        for point in calibration["per_user_thresholds"]:
            lines.append(f"| {point['target_accuracy']:.0%} accuracy | {point['users']} | "
                         f"{_fmt(point['mean_coverage'])} | {_fmt(point['mean_accuracy_answered'])} |")
        lines.append("")
    path = out_dir / "accuracy.md"
    path.write_text("\n".join(lines) + "\n")
    (out_dir / "accuracy.json").write_text(json.dumps(entries, indent=1, default=float))
    return path
