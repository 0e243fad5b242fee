"""The speed report's plot, its notes beside surprising figures, and re-rendering it from a saved bench.json."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from localize import cli
from localize.bench.figures import figure_notes, rerender, throughput_figure
from localize.errors import ValidationError

CURVE = {"base": {"1": 206.2, "8": 200.6, "32": 194.7, "128": 222.2},
         "head": {"1": 194.6, "8": 193.9, "32": 196.3, "128": 211.1}}


def _results() -> dict:
    """The figures of a bench.json that need a word of explanation, as a real run records them."""
    return {"quick": False, "machine": {"cpu_count": 2}, "sizes": {"http_clients": 32},
            "fanout_users_measured": 10_000, "fanout_resident_bytes": 8_940_653_976, "fanout_10000_seconds": 0.121,
            "fanout_10000_extrapolated": False, "resident_adapter_bytes": 4_620, "predict_rps": 78.2,
            "predict_p50_ms": 390.5, "mixed_batch_ratio": 0.97, "throughput_by_distinct_users": CURVE,
            "goals": [{"metric": "fanout_10000_seconds", "value": 0.121, "goal": "< 1", "met": True}]}


def test_throughput_plot_ticks_each_measured_user_count_and_keeps_the_legend_off_the_curves() -> None:
    figure = throughput_figure(CURVE)
    (axis,) = figure.axes
    assert [t.get_text() for t in axis.get_xticklabels()] == ["1", "8", "32", "128"]
    assert axis.get_xlabel() and axis.get_ylabel() == "texts per second"
    assert axis.get_ylim()[1] > 222.2  # the highest point is drawn whole
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legend, panel = axis.get_legend().get_window_extent(renderer), axis.get_window_extent(renderer)
    label = axis.xaxis.label.get_window_extent(renderer)
    assert legend.y1 <= panel.y0 and legend.y1 <= label.y0  # below the panel and its axis label


def test_reserved_fanout_bytes_are_explained_beside_the_bytes_really_written() -> None:
    notes = figure_notes(_results())
    assert "address space" in notes["fanout_resident_bytes"] and "not memory in use" in notes["fanout_resident_bytes"]
    assert "10,000 heads x 4,620 bytes = 46.2 MB" in notes["fanout_resident_bytes"]
    assert "32 / predict_rps = 409 ms" in notes["predict_p50_ms"]
    assert "mixed_batch_ratio" not in notes  # below 1 it needs no word


def test_speed_report_re_renders_from_its_json_with_the_notes_in_the_table(tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps(_results()))
    result = CliRunner().invoke(cli.app, ["bench", "--render-from", str(saved)])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "speed.md").read_text()
    assert [p.name for p in rerender(saved)] == ["throughput_by_distinct_users.png", "speed.md"]
    assert "| metric | value | what it means |" in report
    assert "| fanout_resident_bytes | 8,940,653,976 | address space" in report
    assert json.loads(saved.read_text()) == _results()  # the measured figures are left as they were
    assert (tmp_path / "throughput_by_distinct_users.png").read_bytes()[:4] == b"\x89PNG"
    saved.write_text("[]")
    with pytest.raises(ValidationError, match="is not a bench.json"):
        rerender(saved)


def test_a_gpu_runs_mixed_batch_cost_and_the_quantized_bases_figures_are_explained() -> None:
    gpu = {**_results(), "machine": {"device": "cuda"}, "sizes": {"batch": 128}, "mixed_batch_ratio": 0.655,
           "base_texts_per_second": 21_972.6, "mixed_batch_texts_per_second": 14_392.3, "bnb_test_texts": 400,
           "bnb8_speedup": 0.235, "bnb8_weight_bytes": 58_568_192, "bnb4_accuracy_delta": 2.75}
    notes = figure_notes(gpu)
    assert "5.8 ms" in notes["mixed_batch_ratio"] and "3.1 ms" in notes["mixed_batch_ratio"]
    assert "slower" in notes["bnb8_speedup"] and "embeddings" in notes["bnb8_weight_bytes"]
    assert "400 test texts" in notes["bnb4_accuracy_delta"] and "0.25 points" in notes["bnb4_accuracy_delta"]
    assert "mixed_batch_ratio" not in figure_notes(_results())  # on a CPU a ratio just under 1 needs no word
