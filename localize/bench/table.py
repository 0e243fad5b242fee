"""The terminal view of a bench run: every scalar figure, then the goals with their targets, then the machine."""
from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from localize.bench.registry import all_goals


def goal_report(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per registered goal: its figure in ``results`` (``None`` when that benchmark did not run) and
    whether it is met."""
    report = []
    for goal in all_goals():
        value = results.get(goal.metric)
        report.append({"metric": goal.metric, "value": value, "goal": f"{goal.comparison} {goal.target:g}",
                       "met": goal.met(value)})
    return report


def print_table(results: dict[str, Any], console: Console) -> None:
    machine = results["machine"]
    table = Table("metric", "value", "goal", "met?", title="localize bench" + (" (quick)" if results["quick"] else ""))
    goals = {row["metric"]: row for row in results["goals"]}
    skip = {"quick", "total_seconds", "base_load_seconds"}
    for metric, value in results.items():
        if metric in skip or isinstance(value, (dict, list)) or metric in goals:
            continue
        table.add_row(metric, show(value), "", "")
    for metric, row in goals.items():
        met = {True: "[green]yes[/green]", False: "[red]no[/red]", None: "-"}[row["met"]]
        table.add_row(f"[bold]{metric}[/bold]", show(row["value"]), row["goal"], met)
    console.print(table)
    if "cold_start_breakdown" in results:
        breakdown = Table("cold start stage", "seconds")
        for stage, seconds in results["cold_start_breakdown"].items():
            breakdown.add_row(stage, f"{seconds:.3f}")
        console.print(breakdown)
    console.print(f"machine: {machine['cpu_count']} CPUs ({machine['processor']}), torch {machine['torch']} with "
                  f"{machine['torch_threads']} threads; other processes used {machine.get('other_processes_cores')} "
                  f"cores on average, load average before {machine['load_average_before']} after "
                  f"{machine.get('load_average_after')}; total {results.get('total_seconds')} s")
    for warning in results.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {warning}")
    for name, error in results.get("errors", {}).items():
        console.print(f"[red]{name} failed:[/red] {error}")


def show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
