"""``localize eval``, ``localize bench`` and ``localize capacity``: accuracy, speed and capacity planning."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from localize.cli import common
from localize.cli.common import clean_errors, names, split_list
from localize.cli.root import app
from localize.errors import ValidationError
from localize.recipes import recipe_name


@app.command("eval")
def evaluate(
    data: Annotated[Optional[list[Path]], typer.Option(exists=True, file_okay=False,
                                                       help="Folder with train.jsonl and test.jsonl (repeat with "
                                                            "--report).")] = None,
    method: Annotated[Optional[str], typer.Option(help="Recipe: prior-head (the default: MAP heads on the task "
                                                  "prior) or an adapter method trained per user.")] = None,
    users: Annotated[Optional[list[str]], typer.Option("--user", "-u", "--users", help="Only these users; repeat the "
                                                       "option or separate names with commas; default: all that "
                                                       "qualify.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write results JSON here.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write the full comparison (every recipe and baseline, "
                                                        "learning curves, calibration) as DIR/accuracy.md + PNGs.")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="With --report: the default and the baselines only.")] = False,
    all_methods: Annotated[bool, typer.Option("--all-methods", help="With --report: also LoRA, IA3, prompt and prefix "
                                              "tuning (they run the encoder per user: minutes per user on a CPU).")] = False,
    save_encodings: Annotated[Optional[Path], typer.Option(help="With --report: keep the frozen embeddings in this "
                                                                 "folder between runs.")] = None,
    baselines: Annotated[bool, typer.Option(help="Also score the baselines.")] = True,
    through_services: Annotated[bool, typer.Option("--through-services", help="Import, queue, train and predict through "
                                                   "the production services in a scratch workspace (slow).")] = False,
    workspace: Annotated[Optional[Path], typer.Option(help="With --through-services: keep the workspace here.")] = None,
    min_train: int = 80,
    min_test: int = 15,
    option: Annotated[Optional[list[str]], typer.Option("--set", help="Training argument key=value.")] = None,
    render_from: Annotated[Optional[Path], typer.Option(
        "--render-from", exists=True, dir_okay=False, help="Re-render accuracy.md and its plots from a saved "
        "accuracy.json (into --report, default: its folder); nothing is re-measured.")] = None,
) -> None:
    """Train each qualifying user's adapter on their train rows and score it on their test rows."""
    from localize.evaluation import run_evaluation, run_report

    def progress(message: str) -> None:
        common.out().log(message)

    with clean_errors():
        if render_from is not None:
            if data:
                raise ValidationError("--render-from re-renders a saved accuracy.json; it takes no --data")
            from localize.evaluation.report import render_report

            common.out().print(f"wrote {render_report(render_from, report)}", soft_wrap=True)
            return
        if not data:
            raise ValidationError("--data is required (or --render-from a saved accuracy.json)")
        if report is not None:
            if method or option or users or through_services:
                raise ValidationError("--report runs every recipe on every qualifying user; it takes no --method, "
                                      "--set, --users or --through-services")
            command = "localize eval " + " ".join(f"--data {d}" for d in data) + f" --report {report}"
            command += " --quick" if quick else ""
            command += " --all-methods" if all_methods else ""
            if (min_train, min_test) != (80, 15):
                command += f" --min-train {min_train} --min-test {min_test}"
            path = run_report(data_dirs=list(data), out_dir=report, command=command, quick=quick,
                              all_methods=all_methods, save_encodings=save_encodings, min_train=min_train,
                              min_test=min_test, progress=progress)
            common.out().print(f"wrote {path}", soft_wrap=True)
            return
        if len(data) != 1:
            raise ValidationError(f"--data was given {len(data)} times; only --report takes several data sets")
        if through_services:
            from localize.evaluation.through_services import run_service_evaluation

            results = run_service_evaluation(data_dir=data[0], method=method, users=names(users) or None,
                                             workspace=workspace, min_train=min_train, min_test=min_test,
                                             options=option or [], console=common.out())
        else:
            results = run_evaluation(data_dir=data[0], method=method, options=option or [], users=names(users) or None,
                                     min_train=min_train, min_test=min_test, baselines=baselines, progress=progress)
    summary = results["summary"]
    recipe = recipe_name(summary["training_args"]) if summary.get("training_args") else summary["method"]
    common.out().print(f"{summary['users']} users, recipe {recipe}: mean accuracy {summary['mean_accuracy']:.3f}, "
                  f"mean macro-F1 {summary['mean_macro_f1']:.3f}")
    for baseline in results.get("baselines", []):
        common.out().print(f"  baseline {baseline['name']}: mean accuracy {baseline['mean_accuracy']:.3f}, "
                      f"mean macro-F1 {baseline['mean_macro_f1']:.3f}")
    if out:
        out.write_text(json.dumps(results, indent=2))
        common.out().print(f"wrote {out}", soft_wrap=True)


@app.command()
def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller sizes (fan-out of 1,000 users, one run each); "
                                                         "under a minute.")] = False,
    only: Annotated[Optional[str], typer.Option(help="Comma-separated benchmarks (default: all); an unknown name "
                                                      "lists them all.")] = None,
    size: Annotated[Optional[list[str]], typer.Option(
        "--size", metavar="NAME=VALUE", help="Change one size of the run, e.g. load_seconds=30 or load_clients=8 "
                                             "(repeatable); an unknown name lists them all.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the results JSON here.")] = None,
    report: Annotated[Optional[Path], typer.Option(help="Write speed.md, bench.json and the throughput plot into "
                                                        "this folder (e.g. reports/).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="torch intra-op threads for the whole run (default: "
                                                         "torch's choice); 1 on a CPU shared with busy processes.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON instead of the table "
                                                         "(progress goes to stderr).")] = False,
    render_from: Annotated[Optional[Path], typer.Option(
        "--render-from", exists=True, dir_okay=False, help="Re-render speed.md and its plot from a saved bench.json "
        "(into --report, default: its folder); nothing is measured.")] = None,
) -> None:
    """Measure serving and training speed, each against a baseline from the same run; print a table (or JSON)."""
    from localize.bench import run_benchmarks

    with clean_errors():
        if render_from is not None:
            from localize.bench.figures import rerender

            for path in rerender(render_from, report):
                common.out().print(f"wrote {path}", soft_wrap=True)
            return
        if report is not None and out is None:
            out = Path(report) / "bench.json"
        run_benchmarks(quick=quick, only=split_list(only), out=out, console=common.out(), threads=threads, report=report,
                       as_json=as_json, size_overrides=size)


@app.command()
def capacity(
    figures: Annotated[Optional[list[Path]], typer.Option(
        "--figures", help="JSON from `localize bench --out` or scripts/bench_ray.py (repeatable; later files "
                          "win); default: the latest `localize bench` runs kept in the workspace, else figures "
                          "measured on the development machine.")] = None,
    users: Annotated[int, typer.Option(min=1, help="Users with an adapter.")] = 1_000_000,
    active: Annotated[float, typer.Option(help="Share of users who predict in a day.")] = 0.1,
    rate: Annotated[float, typer.Option(help="Peak prediction rows per second.")] = 1_000.0,
    retrains: Annotated[float, typer.Option(help="Retrains per user per day.")] = 0.1,
    resident_share: Annotated[float, typer.Option(help="Share of active users' adapters kept resident.")] = 1.0,
    replica_memory: Annotated[float, typer.Option(help="GiB of memory per prediction replica.")] = 8.0,
    utilization: Annotated[float, typer.Option(help="Planned busy share of replicas and workers.")] = 0.7,
    scenarios: Annotated[bool, typer.Option("--scenarios", help="Also plan the standard scenarios.")] = False,
    scale: Annotated[bool, typer.Option("--scale", help="Also plan 10^4, 10^5 and 10^6 users of the same workload "
                                                        "shape (rows/s per user, active share, retrains).")] = False,
    check: Annotated[Optional[Path], typer.Option(
        "--check", help="Predict the workload of a `localize bench --only simulate` run (its JSON) and show "
                        "prediction beside measurement.")] = None,
    check_latest: Annotated[bool, typer.Option(
        "--check-latest", help="--check with the latest simulate run kept in the workspace.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Prediction replicas and training workers for a user base, and where the first bottleneck appears."""
    from localize.capacity import SCENARIOS, Figures, Workload, at_scale, describe, latest_results, plan, render
    from localize.settings import get_settings

    with clean_errors():
        sources = list(figures or latest_results(get_settings().home))
        measured = Figures.from_files(sources) if sources else Figures()
        workload = Workload(users=users, active_fraction=active, requests_per_second=rate,
                            retrains_per_user_per_day=retrains, resident_share=resident_share,
                            replica_memory_gib=replica_memory, target_utilization=utilization)
        plans = {"this workload": plan(workload, measured)}
        if scenarios:
            plans.update({name: plan(scenario, measured) for name, scenario in SCENARIOS.items()})
        scaled = at_scale(workload, measured) if scale else {}
        checked = _check(check, sources) if check is not None or check_latest else None
    if as_json:
        common.out().print_json(json.dumps({
            "figures_from": [str(path) for path in sources], **{name: p.as_dict() for name, p in plans.items()},
            **({"scale": {name: p.as_dict() for name, p in scaled.items()}} if scaled else {}),
            **({"check": checked} if checked else {})}))
        return
    origin = ", ".join(str(path) for path in sources) if sources else "constants measured on the development machine"
    parts = [f"figures from: {origin}", describe(measured), render(plans)]
    if scaled:
        parts.append(render(scaled))
    if checked:
        from localize.capacity_check import render as render_check

        parts.append(render_check(checked))
    typer.echo("\n\n".join(parts))  # markdown tables, as docs/deploy.md shows them


def _check(path: Optional[Path], sources: list[Path]) -> dict:
    """Prediction beside measurement for a simulate run (``path``, else the latest in ``sources`` that has one),
    predicted from figures measured outside it (the other ``sources``)."""
    from localize.capacity import Figures
    from localize.capacity_check import predict

    documents = [(p, json.loads(Path(p).read_text())) for p in sources]
    if path is None:
        runs = [p for p, d in documents if isinstance(d, dict) and "simulate_users" in d]
        if not runs:
            raise ValueError("no simulate run among the figures: run `localize bench --only simulate` (or pass "
                             "--check FILE)")
        path = runs[-1]
    simulated = json.loads(Path(path).read_text())
    if "simulate_users" not in simulated:
        raise ValueError(f"{str(path)!r} holds no simulate run (no simulate_users)")
    others = [d for p, d in documents if Path(p).resolve() != Path(path).resolve() and isinstance(d, dict)]
    return predict(simulated, Figures.from_measurements(*others))
