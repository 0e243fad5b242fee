"""Entry points behind ``localize eval``: one recipe plus the baselines, or the full report."""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localize.base_model import BaseModel, get_base_model
from localize.evaluation.baselines import BASELINES
from localize.evaluation.choice import choose_for
from localize.evaluation.data import load_eval_data
from localize.evaluation.harness import Harness, Recipe
from localize.evaluation.recipes import comparison_recipes, default_recipe
from localize.recipes import recipe_name
from localize.evaluation.report import CURVE_SIZES, CURVE_USERS, evaluate_data_set, write_report
from localize.settings import get_settings


def _base() -> BaseModel:
    settings = get_settings()
    return get_base_model(settings.base_model, quantization=settings.quantization, device=settings.device,
                          max_seq_length=settings.max_seq_length)


def recipe_for(method: str | None, options: list[str]) -> Recipe:
    """The default recipe, or the named method with ``key=value`` overrides (as ``localize train`` reads them)."""
    from localize.services.jobs import training_arguments

    default_method = get_settings().default_method
    if method is None and not options:
        return default_recipe(default_method)
    args = training_arguments({"method": method} if method else {}, default_method=default_method, overrides=options)
    # Named as the platform names what it trains ("prior-head, 3 task priors side by side"), not by its encoder method.
    return Recipe(recipe_name(args.to_dict()), args, "overrides: " + (", ".join(options) or "none"))


def run_evaluation(
    *,
    data_dir: Path,
    method: str | None = None,
    options: list[str] | None = None,
    users: list[str] | None = None,
    min_train: int = 80,
    min_test: int = 15,
    baselines: bool = True,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Trains one recipe for every qualifying user and scores it (and the baselines) on their test rows."""
    started = time.perf_counter()
    data = load_eval_data(data_dir, min_train=min_train, min_test=min_test, users=users)
    harness = Harness(data, _base(), progress=progress)
    harness.encode_all()
    choice = None
    if method is None and not options:  # what whole-task training does: choose the recipe on the train rows
        recipe, choice = choose_for(harness, progress=progress)
    else:
        recipe = recipe_for(method, options or [])
    result = harness.run_recipe(recipe)
    summary = {**result.summary(), "method": recipe.args.method, "training_args": recipe.args.to_dict(),
               "labels": data.labels, "data_set": data.name, "seconds": time.perf_counter() - started,
               "recipe_choice": choice}
    output: dict[str, Any] = {"summary": summary, "users": [vars(u) for u in result.users]}
    if baselines:
        output["baselines"] = [harness.run_baseline(name).summary() for name in BASELINES]
    return output


PARENT_CHECK_SECONDS = 1.0


def exit_with_parent(parent: int) -> None:
    """A report worker's initializer: it exits once ``parent`` is gone. A parent stopped by a signal it cannot
    pass on (SIGTERM from a scheduler, SIGKILL) would otherwise leave its workers training for hours for nobody."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _report_job(data_dir: Path, recipes: list[Recipe], reference: bool, sizes: tuple[int | None, ...],
                curve_users: int | None, saved: Path, min_train: int, min_test: int, threads: int,
                finished: Path | None) -> dict[str, Any]:
    """One part of a report in its own process (spawned: torch and forked thread pools do not mix). ``threads``
    splits the cores between the parts (each part's own pool spinning on every core slows all of them several
    times); a part written to ``finished`` is not lost when a later part fails."""
    import torch

    torch.set_num_threads(threads)
    data = load_eval_data(data_dir, min_train=min_train, min_test=min_test)
    tag = f"{data.name}{'' if reference else ' variants'}"
    started = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{tag} {time.perf_counter() - started:6.0f}s] {message}", flush=True)

    part = evaluate_data_set(data, _base(), recipes, reference=reference, choose=reference, curve_sizes=sizes,
                             curve_users=curve_users,
                             saved_encodings=saved, write_encodings=False, progress=progress)
    if finished is not None:
        scratch = finished.with_suffix(".partial")
        scratch.parent.mkdir(parents=True, exist_ok=True)
        scratch.write_text(json.dumps(part, default=float))
        scratch.replace(finished)  # whole or absent
    return part


def _part_path(folder: Path, data_dir: Path, data_name: str, base: BaseModel, job: tuple[Any, ...]) -> Path:
    """Where a finished part is kept: named by everything that decides its result (the data files' bytes, the
    base model, recipes with every training argument, curve sizes, user filters), so a changed input never
    reuses it."""
    digest = hashlib.blake2b(digest_size=8)
    for name in ("train.jsonl", "test.jsonl"):
        digest.update((data_dir / name).read_bytes())
    recipes, reference, sizes, curve_users, _saved, min_train, min_test = job
    key = (base.dims.model_id, base.max_seq_length, recipes, reference, sizes, curve_users, min_train, min_test,
           get_settings().recipe_candidates,  # the reference part's default is chosen among these
           get_settings().stacked_priors_max_labels)
    digest.update(repr(key).encode())
    return folder / "parts" / f"{data_name}-{'reference' if reference else 'variants'}-{digest.hexdigest()}.json"


def run_report(
    *,
    data_dirs: list[Path],
    out_dir: Path,
    command: str,
    quick: bool = False,
    all_methods: bool = False,
    save_encodings: Path | None = None,
    workers: int | None = None,
    min_train: int = 80,
    min_test: int = 15,
    curve_sizes: tuple[int | None, ...] = CURVE_SIZES,
    progress: Callable[[str], None] = lambda message: None,
) -> Path:
    """Every recipe and baseline on each data set, learning curves and calibration -> ``out_dir/accuracy.md``.
    ``quick`` compares only the default with the baselines and draws two curve points (a smoke run);
    ``all_methods`` adds the methods that run the encoder per user (slow on a CPU). Each data set's reference part
    (baselines, default, curves, calibration) and its variants run as parallel processes (``workers``, at most one
    per core). With ``save_encodings`` each finished part is kept in that folder too, and a rerun with the same
    recipes and data reuses it: a run that dies after hours redoes only the parts it had not finished."""
    import multiprocessing
    import tempfile
    from concurrent.futures import ProcessPoolExecutor

    base = _base()
    default_method = get_settings().default_method
    recipes = [default_recipe(default_method)] if quick else comparison_recipes(default_method,
                                                                                 encoder_methods=all_methods)
    sizes = (curve_sizes[0], None) if quick else curve_sizes
    with tempfile.TemporaryDirectory(prefix="localize-report-") as scratch:
        folder = save_encodings or Path(scratch)
        jobs, parts = [], {}
        encoding: dict[str, dict[str, Any]] = {}  # the parts only time reading the saved vectors back
        for data_dir in data_dirs:  # encoded once here; the jobs only read the saved vectors
            data = load_eval_data(data_dir, min_train=min_train, min_test=min_test)
            saved = folder / f"{data.name}.pt"
            progress(f"{data.name}: encoding every distinct text")
            saved_before = saved.is_file()
            encoding[data.name] = {"encode_seconds": Harness(data, base, progress=progress).encode_all(saved),
                                   "encodings_saved_before": saved_before}
            splits = [(recipes[:1], True)] + ([(recipes[1:], False)] if len(recipes) > 1 else [])
            for chosen, reference in splits:
                job = (chosen, reference, sizes, CURVE_USERS, saved, min_train, min_test)
                finished = _part_path(folder, data_dir, data.name, base, job) if save_encodings else None
                if finished is not None and finished.is_file():
                    progress(f"{data.name}: reusing the finished {'reference' if reference else 'variants'} part "
                             f"{finished.name}")
                    parts[len(parts)] = json.loads(finished.read_text())
                else:
                    jobs.append((len(parts), (data_dir, *job), finished))
                    parts[len(parts)] = None
        if jobs:
            cores = os.cpu_count() or 1
            workers = min(workers or len(jobs), len(jobs), cores)
            threads = max(1, cores // workers)
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=exit_with_parent,
                                     initargs=(os.getpid(),)) as pool:
                futures = {index: pool.submit(_report_job, *args, threads, finished)
                           for index, args, finished in jobs}
                for index, future in futures.items():
                    parts[index] = future.result()
    parts = [parts[index] for index in sorted(parts)]
    entries: list[dict[str, Any]] = []
    for part in parts:
        if part["default"] is not None:
            entries.append(part)
        else:  # variants join their data set's reference part
            entry = next(e for e in entries if e["data_set"] == part["data_set"])
            entry["results"] += part["results"]
            entry["seconds"] = max(entry["seconds"], part["seconds"])
    for entry in entries:
        entry.update(encoding[entry["data_set"]])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "accuracy.json").write_text(json.dumps(entries, indent=1, default=float))
    return write_report(entries, out_dir, command=command, min_train=min_train, min_test=min_test)
