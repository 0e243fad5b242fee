"""``localize predict``, ``localize fanout`` and ``localize score``: classify texts with users' adapters, and
score them on labelled rows."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from localize.cli.common import (
    TaskOpt,
    err,
    find_task,
    fmt,
    names,
    print_json,
    print_table,
    progress_bar,
    services,
)
from localize.cli.root import app
from localize.errors import NoAdapterError, ValidationError

# --users is the older spelling; both take names repeated or comma-separated.
UsersAliasOpt = Annotated[Optional[list[str]], typer.Option(
    "--user", "-u", "--users", help="User name; repeat the option or separate names with commas.")]


def read_texts(path: Path) -> list[str]:
    """Texts from a file: JSONL objects with a "text" field, a CSV with a "text" column, or one text per line."""
    import csv

    raw = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".jsonl", ".json"):
        texts = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValidationError(f"{path.name} line {number}: invalid JSON ({error.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise ValidationError(f"{path.name} line {number}: expected an object with a \"text\" string")
            texts.append(record["text"])
        return texts
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(raw.splitlines())
        if "text" not in (reader.fieldnames or []):
            raise ValidationError(f"{path.name} has no \"text\" column (columns: {reader.fieldnames})")
        return [row["text"] for row in reader]
    return [line for line in raw.splitlines() if line.strip()]


@app.command()
def predict(
    texts: Annotated[Optional[list[str]], typer.Argument(help="Texts to classify.")] = None,
    task: TaskOpt = ...,
    user: UsersAliasOpt = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", exists=True, dir_okay=False, help="Also classify "
                                                 "the texts of this file: JSONL or CSV with a text field, or one "
                                                 "text per line.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify texts for one or more users (rows of all users share one batched pass)."""
    from localize.services.predictions import PredictionRequest, predict as predict_service

    users = names(user)
    with services() as (runtime, session):
        all_texts = list(texts or []) + (read_texts(file) if file else [])
        if not users:
            raise ValueError("name at least one --user")
        if not all_texts:
            raise ValueError("give texts as arguments or --file FILE")
        find_task(session, task)  # a mistyped task gets its suggestion before any model loads
        requests = [PredictionRequest(user=u, task=task, text=t) for t in all_texts for u in users]
        chunk = runtime.settings.max_batch_rows
        results = []
        with progress_bar("predicting", len(requests), show=len(requests) > chunk) as advance:
            for start in range(0, len(requests), chunk):
                results += predict_service(session=session, runtime=runtime, requests=requests[start:start + chunk])
                advance(len(requests[start:start + chunk]))
    _print_predictions(results, as_json)


@app.command()
def fanout(
    text: str,
    task: TaskOpt,
    user: UsersAliasOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify one text for every user of a task with an active adapter (or the named ones) at once. Exit code 1
    when no user has one."""
    from localize.services.predictions import fanout as fanout_service

    with services() as (runtime, session):
        task_row = find_task(session, task)
        results = fanout_service(session=session, runtime=runtime, task=task_row, text=text,
                                 user_names=names(user) or None)
        if not results:
            raise NoAdapterError(f"no user of task {task!r} has an active adapter yet; train them first: "
                                 f"`localize train --task {task} --all`")
    _print_predictions(results, as_json)


def _print_predictions(results, as_json: bool) -> None:  # noqa: ANN001
    if as_json:
        print_json([vars(r) for r in results])
        return
    print_table(["user", "text", "label", "p", "version"],
                [[r.user, r.text, r.label, f"{r.probabilities[r.label]:.2f}", f"v{r.version} ({r.source})"]
                 for r in results])


@app.command()
def score(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Labelled JSONL or CSV with user,text,"
                                         "label (the import format).")],
    task: TaskOpt,
    user: Annotated[Optional[list[str]], typer.Option("--user", "-u", help="Only these users; repeat the option or "
                                                      "separate names with commas.")] = None,
    fmt_name: Annotated[Optional[str], typer.Option("--format", help="jsonl or csv; default: from the "
                                                    "extension.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Score only rows of this split (e.g. test).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Accuracy and macro-F1 of each user's active adapter on that user's rows of a labelled file, and their means
    over users. Nothing is stored. Exit code 1 when no user could be scored."""
    from localize.labels_io import read_label_file
    from localize.services.scoring import score_labels

    with services() as (runtime, session):
        task_row = find_task(session, task)
        parsed = read_label_file(file, fmt=fmt_name, max_text_chars=runtime.settings.max_text_chars)
        rows = [row for row in parsed.rows if split is None or row.split == split]
        chunk = runtime.settings.max_batch_rows
        with progress_bar("scoring", len(rows), show=len(rows) > chunk) as advance:
            report = score_labels(session=session, runtime=runtime, task=task_row, rows=rows, errors=parsed.errors,
                                  users=names(user) or None, progress=advance)
    if as_json:
        print_json(report.to_dict())
    else:
        print_table(["user", "rows", "version", "accuracy", "macro-F1", "note"],
                    [[u.user, u.rows, "-" if u.version is None else f"v{u.version}", fmt(u.accuracy),
                      fmt(u.macro_f1), u.skipped or ""] for u in report.users]
                    + [["mean", sum(u.rows for u in report.scored), "", fmt(report.mean_accuracy),
                        fmt(report.mean_macro_f1), f"over {len(report.scored)} user(s)"]])
        for error in report.rejected[:20]:
            err().print(f"  line {error.line}: {error.message}", highlight=False, markup=False)
        if len(report.rejected) > 20:
            err().print(f"  ... and {len(report.rejected) - 20} more rejected (--json lists them all)")
    if not report.scored:
        raise typer.Exit(1)
