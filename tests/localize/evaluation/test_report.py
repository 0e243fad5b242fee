"""The accuracy report's text and plots, written from (and re-rendered from) saved results: no training here."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from typer.testing import CliRunner

from localize import cli
from localize.errors import ValidationError
from localize.evaluation import report
from localize.evaluation.report import calibration_figure, learning_curve_figure, render_report, write_report

matplotlib.use("Agg")

DEFAULT = "default (head on the lora task prior)"  # the name earlier runs stored


def _summary(name: str, kind: str, accuracy: float) -> dict[str, Any]:
    return {"name": name, "kind": kind, "users": 2, "mean_accuracy": accuracy, "mean_macro_f1": accuracy - 0.1,
            "train_seconds_per_user": 0.5, "prior_seconds": None, "adapter_bytes": 3080, "description": "d"}


def _entry(data_set: str = "md_agreement") -> dict[str, Any]:
    """The shape ``evaluate_data_set`` returns, with figures typed in: 25 labels, 200 (users had 152 on average)
    and all of them (235 on average)."""
    users = [{"user": u, "n_train": 200, "n_test": 20, "accuracy": 0.8, "macro_f1": 0.7, "train_seconds": 0.1}
             for u in ("a", "b")]
    curve = [{"labels": 25, "mean_train_labels": 25.0}, {"labels": 200, "mean_train_labels": 152.1},
             {"labels": None, "mean_train_labels": 234.6}]
    return {
        "data_set": data_set, "default": DEFAULT, "users": 2, "labels": ["no", "yes"], "train_rows": 400,
        "test_rows": 40, "encode_seconds": 0.2, "seconds": 60.0, "curve_users": 2, "curve_prior": "per point",
        "results": [{"summary": _summary("per_user_lr", "baseline", 0.7), "users": users},
                    {"summary": _summary(DEFAULT, "recipe", 0.8), "users": users}],
        "learning_curves": {name: [{**p, "mean_accuracy": 0.6 + i / 20, "mean_macro_f1": 0.5 + i / 20}
                                   for i, p in enumerate(curve)] for name in (DEFAULT, "per_user_lr")},
        "calibration": {"method": DEFAULT, "ece": 0.03, "ece_validation": 0.04,
                        "reliability": [[0.55, 0.5, 10], [0.75, 0.7, 10], [0.95, 0.93, 20]],
                        "curve": [{"threshold": t, "mean_coverage": 1.1 - t, "mean_accuracy_answered": t}
                                  for t in (0.5, 0.7, 0.9)],
                        "per_user_thresholds": [{"target_accuracy": t, "users": 2, "mean_coverage": 0.6,
                                                 "mean_accuracy_answered": t} for t in (0.85, 0.9, 0.95)]},
    }


@pytest.fixture
def no_png(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests of the text skip drawing (the plots have tests of their own)."""
    monkeypatch.setattr(report, "_plot_learning_curves", lambda entry, path: None)
    monkeypatch.setattr(report, "_plot_calibration", lambda entry, path: None)


def _overlap(a: Any, b: Any) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _drawn(figure: Any) -> Any:
    figure.canvas.draw()
    return figure.canvas.get_renderer()


def test_learning_curves_tick_every_measured_point_and_name_both_axes() -> None:
    figure = learning_curve_figure(_entry())
    for axis in figure.axes:
        assert [t.get_text() for t in axis.get_xticklabels()] == ["25", "200\n(mean 152)", "all\n(mean 235)"]
        assert axis.get_xscale() == "linear" and list(axis.get_xticks()) == [0, 1, 2]
        assert axis.get_xlabel() == "train labels per user" and axis.get_ylabel().startswith("mean per-user ")
        assert axis.get_legend() is None  # one legend for both panels, below them
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["default recipe", "per_user_lr"]


def test_no_legend_covers_a_panel_or_its_axis_labels() -> None:
    for figure in (learning_curve_figure(_entry()), calibration_figure(_entry())):
        renderer = _drawn(figure)
        legends = figure.legends + [a.get_legend() for a in figure.axes if a.get_legend() is not None]
        assert legends
        for legend in legends:
            box = legend.get_window_extent(renderer)
            for axis in figure.axes:
                assert not _overlap(box, axis.get_window_extent(renderer))
                assert not _overlap(box, axis.xaxis.label.get_window_extent(renderer))
                for tick in axis.get_xticklabels():
                    assert not _overlap(box, tick.get_window_extent(renderer))


def test_calibration_axes_are_labelled_and_each_threshold_target_has_its_own_colour() -> None:
    figure = calibration_figure(_entry())
    for axis in figure.axes:
        assert axis.get_xlabel() and axis.get_ylabel()
    points = figure.axes[1].collections
    colours = {tuple(c.get_facecolor()[0]) for c in points} | {figure.axes[1].lines[0].get_color()}
    assert len(points) == 3 and len(colours) == 4  # the curve and three targets, all distinguishable


def test_report_says_where_the_data_comes_from_and_what_the_encoding_figure_is(tmp_path: Path,
                                                                                 no_png: None) -> None:
    text = write_report([_entry()], tmp_path, command="localize eval --data X --report out").read_text()
    assert text.startswith("# Accuracy on real annotators' labels")
    assert "Source: MD-Agreement" in text
    assert "did not record how long it took: its 0.20 s is the time to read those saved encodings back" in text
    assert "encoding every distinct text once took 0 s" not in text
    assert "| **default recipe** | recipe |" in text and "lora" not in text
    assert "| method | 25 | 200 (mean 152) | all (mean 235) |" in text

    synthetic = {**_entry("traders"), "encode_seconds": 12.4, "encodings_saved_before": False}
    text = write_report([synthetic], tmp_path / "held", command="c").read_text()
    assert text.startswith("# Accuracy on a synthetic data set (no real person's labels)")
    assert "no real person labelled them" in text and "encoding every distinct text once took 12 s" in text
    reused = {**_entry(), "encodings_saved_before": True}
    assert "read from encodings an earlier run saved" in write_report([reused], tmp_path / "r", command="c").read_text()


def test_render_from_saved_json_rewrites_text_and_plots_without_remeasuring(tmp_path: Path) -> None:
    first = write_report([_entry()], tmp_path / "run", command="localize eval --data X --report run")
    saved = json.loads((tmp_path / "run" / "accuracy.json").read_text())
    assert saved[0]["run"]["command"] == "localize eval --data X --report run"

    result = CliRunner().invoke(cli.app, ["eval", "--render-from", str(tmp_path / "run" / "accuracy.json"),
                                          "--report", str(tmp_path / "again")])
    assert result.exit_code == 0, result.output
    again = (tmp_path / "again" / "accuracy.md").read_text()
    assert "Generated by `localize eval --data X --report run` (" + saved[0]["run"]["generated_at"] in again
    assert "re-rendered from" in again and "no figure was re-measured" in again
    # every figure is the saved one: the pages differ only in the line that says the page was re-rendered
    assert again.splitlines()[3:] == first.read_text().splitlines()[3:]
    for png in ("learning_curves", "calibration"):
        assert (tmp_path / "again" / f"md_agreement_{png}.png").read_bytes()[:4] == b"\x89PNG"


def test_render_refuses_results_without_a_record_of_their_run(tmp_path: Path) -> None:
    path = tmp_path / "accuracy.json"
    path.write_text(json.dumps([_entry()]))
    with pytest.raises(ValidationError, match="no record of the run that produced \\['md_agreement'\\]"):
        render_report(path)
    path.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValidationError, match="is not an accuracy.json"):
        render_report(path)
    result = CliRunner().invoke(cli.app, ["eval", "--render-from", str(path), "--data", str(tmp_path)])
    assert result.exit_code == 1 and "takes no --data" in result.output


def test_entries_are_not_changed_by_rendering_except_for_the_run_record(tmp_path: Path, no_png: None) -> None:
    entry = _entry()
    before = copy.deepcopy(entry)
    write_report([entry], tmp_path, command="c")
    assert {k: v for k, v in entry.items() if k != "run"} == before


def test_a_figure_just_below_its_target_shows_the_digit_that_misses_it() -> None:
    from localize.evaluation.report import _verdict

    def summary(name: str, kind: str, accuracy: float, macro_f1: float) -> dict:
        return {"summary": {"name": name, "kind": kind, "mean_accuracy": accuracy, "mean_macro_f1": macro_f1}}

    entry = {"data_set": "md_agreement", "default": "chosen",
             "results": [summary("chosen", "recipe", 0.80338, 0.73978), summary("stacked_lr", "baseline", 0.749, 0.633),
                         summary("crowd", "baseline", 0.7, 0.73978)]}
    lines = _verdict(entry)
    assert "- target macro-f1 >= 0.74: 0.7398: **NOT met**" in lines  # 0.740 would read as met
    assert "- target accuracy >= 0.80: 0.803: **met**" in lines
    assert "- macro-F1 at or above the crowd oracle's (0.740): 0.740: **met**" in lines


def test_a_candidate_scored_from_anothers_fits_says_so_instead_of_its_seconds() -> None:
    from localize.evaluation.report import _choice_lines

    def candidate(name: str, seconds: float, scored_from: str | None = None) -> dict:
        return {"name": name, "description": name + " heads", "accuracy": 0.8, "macro_f1": 0.7, "score": 0.75,
                "seconds": seconds, "scored_from": scored_from}

    entry = {"data_set": "traders", "results": [], "recipe_choice": {
        "recipe": "mlp-averaged", "folds": 3, "validation_rows": 30, "validation_texts": 10, "seconds": 42.0,
        "fold_winners": ["mlp-averaged"] * 3, "bootstrap_wins": {"mlp-averaged": 1.0},
        "candidates": [candidate("mlp", 0.0, scored_from="mlp-averaged"), candidate("mlp-averaged", 40.0)]}}
    lines = _choice_lines(entry)
    assert "| mlp | 0.800 / 0.700 | - | 0% | 0 of 3 | in mlp-averaged's | mlp heads |" in lines
    assert "| **mlp-averaged** | 0.800 / 0.700 | - | 100% | 3 of 3 | 40 | mlp-averaged heads |" in lines
