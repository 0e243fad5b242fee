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
from localize.recipes import describe_decision_rule
from localize.errors import ValidationError
from localize.evaluation.baselines import BASELINES
from localize.evaluation.choice import candidate_runs, choose_for
from localize.calibration import expected_calibration_error
from localize.evaluation.calibration import coverage_accuracy, per_user_abstention, reliability
from localize.evaluation.data import EvalData
from localize.evaluation.harness import Harness, MethodResult, Recipe

CURVE_SIZES = (25, 50, 100, 200, None)  # None: all of the user's train labels
CURVE_BASELINES = ("majority", "per_user_lr", "stacked_lr")
CURVE_USERS = 32  # learning curves cost five trainings per user: the first users by id
ABSTAIN_TARGETS = (0.85, 0.90, 0.95)
TARGETS = {"md_agreement": {"accuracy": 0.80, "macro_f1": 0.74}, "hs_brexit": {"accuracy": 0.89, "macro_f1": 0.74}}
# Where a target is the best non-oracle baseline plus a margin rather than a fixed figure.
BASELINE_MARGINS = {"convabuse": 0.02}
ORACLES = ("crowd",)  # baselines that peek at test labels: a bar to reach, never "the best baseline"


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
    choose: bool = False,
    curve_sizes: tuple[int | None, ...] = CURVE_SIZES,
    curve_users: int | None = None,
    saved_encodings: Path | None = None,
    write_encodings: bool = True,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """The recipes of one data set; with ``reference`` (the first recipe is then the default) also the baselines,
    learning curves (on the first ``curve_users`` users) and calibration. With ``reference`` and ``choose``, the
    default is the recipe whole-task training chooses on the train rows, and every candidate it tried is scored on
    test rows too."""
    started = time.perf_counter()
    harness = Harness(data, base, progress=progress)
    encode_seconds = harness.encode_all(saved_encodings, write=write_encodings)
    choice = None
    if reference and choose:
        chosen, choice = choose_for(harness, progress=lambda message: progress(f"{data.name}: {message}"))
        recipes = [chosen, *candidate_runs(harness, choice), *recipes[1:]]
    results: list[MethodResult] = []
    for name in BASELINES if reference else ():
        progress(f"{data.name}: baseline {name}")
        results.append(harness.run_baseline(name))
    by_args: dict[str, MethodResult] = {}
    for recipe in recipes:
        key = repr((recipe.args.to_dict(), recipe.max_users))
        if key in by_args:  # the same training as a recipe above (the winner is one of the candidates)
            same = by_args[key]
            results.append(MethodResult(recipe.name, same.kind, recipe.description, same.users, same.prior_seconds,
                                        same.test_probabilities, same.validation))
            continue
        progress(f"{data.name}: recipe {recipe.name}")
        results.append(harness.run_recipe(recipe))
        by_args[key] = results[-1]
    entry: dict[str, Any] = {
        "data_set": data.name,
        "default": recipes[0].name if reference else None,
        "users": len(data.users),
        "labels": data.labels,
        "train_rows": len(data.train),
        "test_rows": len(data.test),
        "encode_seconds": encode_seconds,
        "results": [r.to_dict() for r in results],
        "recipe_choice": choice,
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
# Where each known data set's labels come from, so a reader knows whether a figure is about real people.
DATA_SETS = {
    "md_agreement": ("real", "MD-Agreement (Leonardelli et al. 2021): English tweets on Black Lives Matter, the 2020 "
                             "US election and Covid-19, each labelled offensive or not by five of 819 crowd "
                             "annotators, chosen to provoke disagreement"),
    "hs_brexit": ("real", "HS-Brexit (Akhtar et al. 2021): English tweets about Brexit labelled hateful or not by six "
                          "annotators (three of them Muslim immigrants), each of whom labelled every tweet"),
    "traders": ("synthetic", "synthetic: finance tweets generated and labelled by `research/traders_dataset.py` for "
                             "eight simulated traders whose positions decide each label, with 10% of labels flipped "
                             "at random; no real person labelled them"),
}


def _display_name(name: str | None) -> str:
    """Recipe names as stored by earlier runs; the default's long name said "lora" for a recipe whose users store
    linear heads."""
    if name and name.startswith("chosen: "):
        return f"recipe chosen ({name.removeprefix('chosen: ')})"
    return "default recipe" if name and name.startswith("default (") else (name or "")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve_tick(point: dict[str, Any]) -> str:
    """The tick of a measured point: its label count, and the users' mean where they had fewer (and for "all")."""
    mean = point["mean_train_labels"]
    if point["labels"] is None:
        return f"all\n(mean {mean:.0f})"
    return str(point["labels"]) if abs(mean - point["labels"]) < 0.5 else f"{point['labels']}\n(mean {mean:.0f})"


def _plot_learning_curves(entry: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    figure = learning_curve_figure(entry)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def learning_curve_figure(entry: dict[str, Any]) -> Any:
    """Accuracy and macro-F1 against labels per user, one tick per measured point, the legend below both panels."""
    plt = _pyplot()
    curves = entry["learning_curves"]
    points = next(iter(curves.values()))
    # The points double (25, 50, 100, 200) and then take every label, so they are drawn evenly spaced: a log scale
    # for the doublings, with "all" one step further, each tick at a measured point.
    positions = list(range(len(points)))
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for name, series in curves.items():
        width = 2.5 if name == entry["default"] else 1.2
        for axis, key in zip(axes, ("mean_accuracy", "mean_macro_f1")):
            axis.plot(positions, [p[key] for p in series], marker="o", label=_display_name(name), linewidth=width)
    for axis, metric in zip(axes, ("accuracy", "macro-F1")):
        axis.set_xticks(positions, [_curve_tick(p) for p in points])
        axis.set_xlim(-0.3, len(positions) - 0.7)
        axis.set_xlabel("train labels per user")
        axis.set_ylabel(f"mean per-user {metric}")
        axis.set_title(f"{entry['data_set']}: {metric} against labels per user")
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    figure.tight_layout(rect=(0, 0.07, 1, 1))  # the legend sits below both panels, over no curve
    return figure


def _plot_calibration(entry: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    figure = calibration_figure(entry)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def calibration_figure(entry: dict[str, Any]) -> Any:
    """The reliability diagram and the abstention trade-off, each legend below its panel."""
    plt = _pyplot()
    calibration = entry["calibration"]
    figure, axes = plt.subplots(1, 2, figsize=(11, 5.6))
    confidence, accuracy, _ = zip(*calibration["reliability"])
    axes[0].plot([0.5, 1], [0.5, 1], linestyle="--", color="grey", label="perfect calibration")
    axes[0].plot(confidence, accuracy, marker="o", color="C0",
                 label=f"{_display_name(calibration['method'])} (ECE {calibration['ece']:.3f})")
    axes[0].set_xlabel("confidence of the predicted label (bin mean)")
    axes[0].set_ylabel("accuracy of the rows in the bin")
    axes[0].set_title(f"{entry['data_set']}: reliability (test rows, all users)")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    curve = calibration["curve"]
    axes[1].plot([p["mean_coverage"] for p in curve], [p["mean_accuracy_answered"] for p in curve], marker=".",
                 color="C0", label="one threshold for all users (0.50 to 0.975)")
    for index, point in enumerate(calibration["per_user_thresholds"]):
        axes[1].scatter(point["mean_coverage"], point["mean_accuracy_answered"], zorder=3, s=60,
                        color=f"C{index + 1}", marker="sDP^"[index % 4],
                        label=f"per-user threshold aiming at {point['target_accuracy']:.0%} (set on validation)")
    axes[1].set_xlabel("mean per-user coverage (share of test rows answered)")
    axes[1].set_ylabel("mean per-user accuracy on answered rows")
    axes[1].set_title(f"{entry['data_set']}: abstain below a confidence threshold")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    figure.tight_layout()
    return figure


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _bytes(value: int) -> str:
    return f"{value:,}" if value else "0"


def _against(value: float, bound: float) -> str:
    """``value`` to three decimals, or four where three would round it onto the other side of ``bound`` (0.7398
    against 0.74 is not met, yet reads 0.740)."""
    shown = f"{value:.3f}"
    return shown if (float(shown) >= bound) == (value >= bound) else f"{value:.4f}"


def _verdict(entry: dict[str, Any]) -> list[str]:
    rows = {r["summary"]["name"]: r["summary"] for r in entry["results"]}
    default = rows[entry["default"]]
    baselines = [s for s in rows.values() if s["kind"] == "baseline"]
    lines = []
    margin = BASELINE_MARGINS.get(entry["data_set"], 0.0)
    for metric, label in (("mean_accuracy", "accuracy"), ("mean_macro_f1", "macro-F1")):
        best = max((s for s in baselines if s["name"] not in ORACLES), key=lambda s: s[metric])
        ok = default[metric] >= best[metric] + margin
        plus = f" + {margin:.2f}" if margin else ""
        lines.append(f"- {label}: default {_against(default[metric], best[metric] + margin)} vs best non-oracle "
                     f"baseline {best['name']} {best[metric]:.3f}{plus}: **{'met' if ok else 'NOT met'}**")
    oracle = next((s for s in baselines if s["name"] in ORACLES), None)
    if oracle is not None:
        ok = default["mean_macro_f1"] >= oracle["mean_macro_f1"]
        shown = _against(default["mean_macro_f1"], oracle["mean_macro_f1"])
        lines.append(f"- macro-F1 at or above the crowd oracle's ({oracle['mean_macro_f1']:.3f}): {shown}: "
                     f"**{'met' if ok else 'NOT met'}**")
    for metric, target in TARGETS.get(entry["data_set"], {}).items():
        value = default["mean_" + metric]
        lines.append(f"- target {metric.replace('_', '-')} >= {target:.2f}: {_against(value, target)}: "
                     f"**{'met' if value >= target else 'NOT met'}**")
    return lines


def _choice_lines(entry: dict[str, Any]) -> list[str]:
    """The "recipe chosen" table: each candidate's validation figures (what the choice saw), its test figures (what
    it did not), the winner and the seconds."""
    choice = entry.get("recipe_choice")
    if not choice:
        return []
    tests = {r["summary"]["name"].removeprefix("candidate: "): r["summary"] for r in entry["results"]
             if r["summary"]["name"].startswith("candidate: ")}
    where = (f"{choice['folds']} folds by text (every train row scored once)" if choice["folds"] > 1
             else "one held-out fifth of the texts")
    lines = ["", f"### {entry['data_set']}: recipe chosen", "",
             f"Whole-task training chose **{choice['recipe']}** on the train rows alone: every candidate trained on "
             f"part of the texts (its task prior too) and was scored on {choice['validation_rows']:,} rows of "
             f"{choice['validation_texts']:,} held-out texts ({where}) of {choice.get('users_scored', '?')} of the "
             f"{choice.get('users', '?')} users whose labels the priors trained on; the score is the mean over users of "
             "(accuracy + macro-F1) / 2. Test rows played no part in the choice; the test columns show what each "
             f"candidate would have scored. The choice took {choice['seconds'] / 60:.1f} min; its task prior is "
             f"{choice.get('prior') or 'none'}."
             + "".join(" " + describe_decision_rule(c) for c in choice["candidates"]
                       if c["name"] == choice["recipe"] and describe_decision_rule(c)), "",
             "| candidate | validation accuracy / macro-F1 | test accuracy / macro-F1 | wins on user resamples "
             "| winner per fold | seconds (choice) | what it is |", "|---|---|---|---|---|---|---|"]
    for c in choice["candidates"]:
        test = tests.get(c["name"])
        tested = f"{test['mean_accuracy']:.3f} / {test['mean_macro_f1']:.3f}" if test else "-"
        if c.get("skipped"):
            lines.append(f"| {c['name']} | skipped: {c['skipped']} | {tested} | - | - | - | {c['description']} |")
            continue
        bold = "**" if c["name"] == choice["recipe"] else ""
        won = sum(1 for w in choice["fold_winners"] if w == c["name"])
        per_fold = f"{won} of {choice['folds']}" if choice["folds"] > 1 else "-"
        seconds = f"in {c['scored_from']}'s" if c.get("scored_from") else f"{c['seconds']:.0f}"
        lines.append(f"| {bold}{c['name']}{bold} | {c['accuracy']:.3f} / {c['macro_f1']:.3f} | {tested} | "
                     f"{100 * choice['bootstrap_wins'].get(c['name'], 0):.0f}% | {per_fold} | "
                     f"{seconds} | {c['description']} |")
    return lines


def _correction_sentence(entry: dict[str, Any]) -> str:
    """What the choice's calibration correction did on its held-out rows (empty without one)."""
    choice = entry.get("recipe_choice") or {}
    winner = next((c for c in choice.get("candidates", []) if c["name"] == choice.get("recipe")), None)
    if not winner or winner.get("held_out_ece") is None:
        return ""
    return (f" Each user's probabilities were calibrated on their own validation rows, then corrected task-wide "
            f"by what the recipe choice measured on its held-out texts (rows no calibrated model had seen): "
            f"temperatures times {winner['temperature_scale']:.2f} and a uniform share of "
            f"{winner['added_uniform_share']:.2f} added, which took the held-out rows' ECE from "
            f"{winner['held_out_ece']:.3f} to {winner['held_out_ece_corrected']:.3f}.")


def _run_record(entries: list[dict[str, Any]], *, command: str | None, min_train: int,
                min_test: int) -> dict[str, Any]:
    """How the results were produced, kept in every entry of ``accuracy.json`` so the report can be re-rendered from
    it; ``command=None`` reads it back."""
    if command is not None:
        record = {"command": command, "generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "machine": f"{platform.machine()}, CPU", "min_train": min_train, "min_test": min_test}
        for entry in entries:
            entry["run"] = record
        return record
    missing = [entry.get("data_set", "?") for entry in entries if "run" not in entry]
    if missing or not entries:
        raise ValidationError(f"accuracy.json has no record of the run that produced {missing or 'it'} "
                              "(command, date, machine): it cannot be re-rendered")
    return entries[0]["run"]


def _title(entries: list[dict[str, Any]]) -> str:
    kinds = {DATA_SETS.get(entry["data_set"], ("unknown", ""))[0] for entry in entries}
    if kinds == {"real"}:
        return "Accuracy on real annotators' labels"
    if kinds == {"synthetic"}:
        return "Accuracy on a synthetic data set (no real person's labels)"
    return "Per-user accuracy"


def _encoding_sentence(entry: dict[str, Any]) -> str:
    seconds = entry["encode_seconds"]
    if "encodings_saved_before" not in entry:  # runs that recorded only the parts' read-back of the saved encodings
        return (f"every distinct text was encoded once at the start of the run (that run did not record how long it "
                f"took: its {seconds:.2f} s is the time to read those saved encodings back)")
    if entry["encodings_saved_before"]:
        return (f"every distinct text's embedding was read from encodings an earlier run saved (`--save-encodings`) "
                f"in {seconds:.1f} s")
    return f"encoding every distinct text once took {seconds:.0f} s"


def render_report(results: Path, out_dir: Path | None = None) -> Path:
    """Re-renders ``accuracy.md`` and its plots from a saved ``accuracy.json`` (nothing is re-measured)."""
    entries = json.loads(results.read_text())
    if not isinstance(entries, list):
        raise ValidationError(f"{results} is not an accuracy.json written by `localize eval --report`")
    return write_report(entries, out_dir or results.parent, rendered_from=str(results))


def write_report(entries: list[dict[str, Any]], out_dir: Path, *, command: str | None = None, notes: str = "",
                 min_train: int = 80, min_test: int = 15, rendered_from: str | None = None) -> Path:
    """``accuracy.md``, its plots and ``accuracy.json`` in ``out_dir``; ``command`` names the run that produced
    ``entries`` (without it, the run recorded in them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _run_record(entries, command=command, min_train=min_train, min_test=min_test)
    rendered = (f" This page and its plots were re-rendered from `{rendered_from}` by "
                f"`localize eval --render-from {rendered_from}`; no figure was re-measured.") if rendered_from else ""
    lines = [
        f"# {_title(entries)}",
        "",
        f"Generated by `{run['command']}` ({run['generated_at']}, {run['machine']}).{rendered} Protocol: the data "
        f"set's item-level split; users with >= {run['min_train']} train and >= {run['min_test']} test labels; the "
        "mean over users of accuracy and of macro-F1 (over the labels present in the user's test rows or "
        "predictions); validation rows come out of each user's train rows, never test, and are held out by text, "
        "so a task prior never trains on a text its users validate on.",
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
        source = DATA_SETS.get(name)
        if source:
            lines += [f"## {name}", "", f"Source: {source[1]}.", ""]
        else:
            lines += [f"## {name}", ""]
        lines += [
            f"{entry['users']} users scored, labels {entry['labels']}, {entry['train_rows']:,} train / "
            f"{entry['test_rows']:,} test rows; {_encoding_sentence(entry)}; the whole data set took "
            f"{entry['seconds'] / 60:.1f} min. The bold row is what `localize train --all` does without "
            "`--method`: the recipe chosen on the train rows (below), or the default recipe in runs from before the "
            "choice existed.",
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
                f"| {bold}{_display_name(s['name'])}{bold} | {s['kind']} | {s['users']} | {bold}{_fmt(s['mean_accuracy'])}{bold} | "
                f"{bold}{_fmt(s['mean_macro_f1'])}{bold} | {reference} | {_fmt(s['train_seconds_per_user'], 2)} | "
                f"{_fmt(s['prior_seconds'], 0)} | {_bytes(s['adapter_bytes'])} | {description} |")
        lines += _choice_lines(entry)
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
            "| method | " + " | ".join(_curve_tick(p).replace("\n", " ")
                                       for p in next(iter(entry["learning_curves"].values()))) + " |",
            "|---|" + "---|" * len(next(iter(entry["learning_curves"].values()))),
        ]
        for method, points in entry["learning_curves"].items():
            lines.append(f"| {_display_name(method)} | " + " | ".join(f"{p['mean_accuracy']:.3f} / {p['mean_macro_f1']:.3f}"
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
            f"Expected calibration error of **{_display_name(calibration['method'])}** (15 bins, top label): "
            f"**{calibration['ece']:.3f}** on test rows"
            + (f", {calibration['ece_validation']:.3f} on the users' validation rows" if calibration["ece_validation"]
               is not None else "") + "." + _correction_sentence(entry),
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
