"""Active learning, measured by simulation on per-annotator data: each user's train labels are revealed in the
labelling queue's order (the product's :func:`localize.services.queue.order_queue`, its default mix) or at random,
the user's head is refitted every ``step`` labels, and macro-F1 is scored on that user's own test rows.

The model is the product's MAP head (:func:`localize.map_head.solve_map_head`, square-root class weights, strength
10) on frozen base encodings, pulled toward a prior head fitted the same way on the other users' pooled train labels
(leave-this-user-out, so no prior has seen the user's labels). The default recipe's task prior tunes four layers
first, which would cost one prior per simulated user; the queue's ordering rule is the same either way.

    python -m localize.evaluation.active_learning --data DIR [--data DIR ...] --out reports/ [--cache DIR]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from localize.evaluation.data import EvalData, load_eval_data
from localize.evaluation.harness import user_metrics
from localize.map_head import class_weights_for, solve_map_head
from localize.services.queue import (
    DEFAULT_DISAGREEMENT_WEIGHT,
    DEFAULT_RANDOM_SHARE,
    DEFAULT_UNCERTAINTY_WEIGHT,
    order_queue,
)
from localize.training_args import TrainingArguments

logger = logging.getLogger(__name__)

DEFAULT_SIZES = tuple(range(10, 201, 10))
RANDOM_SEEDS = (0, 1, 2)


@dataclass
class Curves:
    """Mean per-user macro-F1 and accuracy at each number of revealed labels, for each order."""

    data_set: str
    users: list[str]
    sizes: list[int]
    macro_f1: dict[str, list[float]] = field(default_factory=dict)  # order -> per size
    accuracy: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    eligible: int = 0  # users with enough train rows; ``users`` may be the first of them only
    encoder: str = "frozen base"  # what users' heads read: "frozen base" or "task prior"

    def labels_to_reach(self, order: str, target: float) -> int | None:
        """The fewest revealed labels at which ``order``'s mean macro-F1 reaches ``target`` (None: never)."""
        for size, value in zip(self.sizes, self.macro_f1[order]):
            if value >= target - 1e-12:
                return size
        return None

    def summary(self) -> dict:
        random_final = self.macro_f1["random"][-1]
        return {"data_set": self.data_set, "users": len(self.users), "largest": self.sizes[-1],
                "random_macro_f1_at_largest": random_final,
                "active_macro_f1_at_largest": self.macro_f1["active"][-1],
                "active_labels_to_reach_random_at_largest": self.labels_to_reach("active", random_final),
                "seconds": self.seconds}


class _Simulator:
    """One data set's encodings, label indexes and priors; simulates one user at a time."""

    def __init__(self, data: EvalData, encode, *, strength: float, weighting: str) -> None:  # noqa: ANN001
        self.data = data
        self.strength = strength
        self.weighting = weighting
        texts = sorted({r.text for r in data.train} | {r.text for r in data.test})
        self.row_of = {text: i for i, text in enumerate(texts)}
        self.vectors = torch.as_tensor(encode(texts), dtype=torch.float32)  # [texts, hidden]
        self.num_labels = len(data.labels)
        zero = {"weight": torch.zeros(self.num_labels, self.vectors.shape[1]), "bias": torch.zeros(self.num_labels)}
        self.zero = zero

    def _xy(self, rows: Sequence) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN401
        index = torch.tensor([self.row_of[r.text] for r in rows], dtype=torch.long)
        return self.vectors[index], torch.tensor(self.data.label_index(list(rows)), dtype=torch.long)

    def _fit(self, x: torch.Tensor, y: torch.Tensor, center: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        counts = np.bincount(y.numpy(), minlength=self.num_labels).astype(float)
        weights = class_weights_for(counts, self.weighting)
        weight, bias = solve_map_head(x, y, center, strength=self.strength,
                                      class_weights=None if weights is None else torch.tensor(weights,
                                                                                              dtype=torch.float32))
        return {"weight": weight, "bias": bias}

    @staticmethod
    def _proba(head: dict[str, torch.Tensor], x: torch.Tensor) -> np.ndarray:
        return torch.softmax(x @ head["weight"].T + head["bias"], dim=-1).numpy()

    def prior_without(self, user: str) -> dict[str, torch.Tensor]:
        others = [r for r in self.data.train if r.user != user]
        x, y = self._xy(others)
        return self._fit(x, y, self.zero)

    def curve(self, user: str, sizes: Sequence[int], order: str, seed: int,
              prior: dict[str, torch.Tensor], queue_options: dict | None = None) -> list[tuple[float, float]]:
        pool = self.data.rows(user, "train")
        pool_x, pool_y = self._xy(pool)
        test_x, test_y = self._xy(self.data.rows(user, "test"))
        prior_pool = self._proba(prior, pool_x)
        step = sizes[0]
        revealed: list[int] = []
        rng = random.Random(f"{seed}:{user}")
        shuffled = list(range(len(pool)))
        rng.shuffle(shuffled)
        head = None
        scores = []
        for size in sizes:
            while len(revealed) < size:
                if order == "random":
                    revealed = shuffled[:size]
                    break
                taken = set(revealed)
                remaining = [i for i in range(len(pool)) if i not in taken]
                user_p = None if head is None else self._proba(head, pool_x[remaining])
                picks = order_queue(user_probabilities=user_p, prior_probabilities=prior_pool[remaining],
                                    n_candidates=len(remaining), limit=min(step, size - len(revealed)),
                                    seed=rng.randrange(2**32), **(queue_options or {}))
                revealed += [remaining[p.index] for p in picks]
            index = torch.tensor(revealed, dtype=torch.long)
            head = self._fit(pool_x[index], pool_y[index], prior)
            predicted = self._proba(head, test_x).argmax(1)
            scores.append(user_metrics(test_y.numpy(), predicted))
        return scores


class _TaskPriorSimulator(_Simulator):
    """The product's own model: each user's MAP head on the encodings of a task prior (the default recipe's tuned
    layers) and pulled toward that prior's head. The prior trained on every train row but those of the users it
    serves here, as for a user who joins a task that others have labelled."""

    def __init__(self, data: EvalData, prior_head: dict[str, torch.Tensor], encode, *, strength: float,  # noqa: ANN001
                 weighting: str) -> None:
        super().__init__(data, encode, strength=strength, weighting=weighting)
        self.prior_head = {k: v.detach().float().clone() for k, v in prior_head.items()}

    def prior_without(self, user: str) -> dict[str, torch.Tensor]:
        return self.prior_head


PRIOR_SHARE = 0.7  # each prior of --encoder prior trains on at least this share of the task's train rows


def folds_for_priors(data: EvalData, users: list[str], share: float = PRIOR_SHARE) -> int:
    """The fewest folds of ``users`` (by position) for which every prior, trained without one fold's users, still
    trains on at least ``share`` of the train rows (one fold per user when none is enough): a task with many other
    users needs one prior, one whose users are all simulated needs several."""
    counts = {user: len(data.rows(user, "train")) for user in users}
    total = len(data.train)
    for folds in range(1, len(users) + 1):
        if all(total - sum(counts[u] for u in users[fold::folds]) >= share * total for fold in range(folds)):
            return folds
    return len(users)


def task_prior_simulators(data: EvalData, base, users: list[str], folds: int, *,  # noqa: ANN001
                          last_epoch: int | None = None, cache: Path | None = None,
                          progress=None) -> dict[str, _Simulator]:  # noqa: ANN001
    """One simulator per fold of ``users`` (by position): its task prior trains on every other user's train rows
    with the default recipe's prior arguments (stopped after ``last_epoch``, as whole-task training stops the
    served prior at the epoch its recipe choice found best), and every text is encoded with it once. With
    ``cache``, a fold's encodings and prior head are kept there, keyed by the rows it trained on and the prior's
    arguments."""
    from localize.activations import ActivationCache
    from localize.training import Trainer

    args = TrainingArguments(prior_last_epoch=last_epoch)
    texts = sorted({r.text for r in data.train} | {r.text for r in data.test})
    index = {text: i for i, text in enumerate(texts)}
    simulator_of: dict[str, _Simulator] = {}
    for fold in range(min(folds, len(users))):
        held = set(users[fold::folds])
        rows = [r for r in data.train if r.user not in held]
        digest = hashlib.blake2b(repr((args.for_prior().to_dict(), base.dims.model_id, texts,
                                       [(r.user, r.text, r.label) for r in rows])).encode(), digest_size=12)
        path = None if cache is None else Path(cache) / f"prior-{digest.hexdigest()}.pt"
        if path is not None and path.is_file():
            saved = torch.load(path)
        else:
            def report(fraction: float, message: str, fold: int = fold) -> None:
                if progress:
                    progress(f"{data.name}: task prior {fold + 1} of {folds}: {message}")

            report(0.0, f"training without {len(held)} users, on {len(rows):,} rows")
            cache_of_activations = ActivationCache()
            prior = Trainer(base, args.for_prior(), [r.text for r in rows], [r.label for r in rows], data.labels,
                            cache=cache_of_activations, annotators=[r.user for r in rows], progress=report).train()
            with torch.inference_mode():
                vectors = torch.stack(cache_of_activations.encoded(base, prior, texts, batch_size=128))
            saved = {"vectors": vectors.float(), "head": {k: v.detach().float() for k, v in prior.head.items()}}
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(saved, path)

        def encode(batch: list[str], vectors: torch.Tensor = saved["vectors"]) -> np.ndarray:
            return vectors[[index[t] for t in batch]].numpy()

        simulator = _TaskPriorSimulator(data, saved["head"], encode, strength=args.head_prior_strength,
                                        weighting=args.class_weighting)
        simulator_of.update({user: simulator for user in held})
    return simulator_of


def prior_epochs(values: Sequence[str], data_sets: Sequence[str]) -> Callable[[str], int | None]:
    """The last prior epoch for each data set from ``--prior-last-epoch`` values (``N`` for every set, ``NAME=N``
    for one); raises ValueError naming a value that is not a whole number of at least 1, or a name no --data has."""
    default, named = None, {}
    for value in values:
        name, _, number = value.rpartition("=")
        if name and name not in data_sets:
            raise ValueError(f"--prior-last-epoch {value}: {name!r} is not the name of a --data folder "
                             f"({', '.join(data_sets) or 'none given'})")
        if not number.isdigit() or int(number) < 1:
            raise ValueError(f"--prior-last-epoch must be at least 1, not {number}" if number.lstrip("-").isdigit()
                             else f"--prior-last-epoch {value}: {number!r} is not a whole number of epochs")
        if name:
            named[name] = int(number)
        else:
            default = int(number)
    return lambda data_set: named.get(data_set, default)


def simulate(data: EvalData, encode, *, sizes: Sequence[int] = DEFAULT_SIZES,  # noqa: ANN001
             limit_users: int | None = None, skip_users: int = 0, queue_options: dict | None = None,
             task_prior_base=None, prior_folds: int | None = None, prior_last_epoch: int | None = None,
             prior_cache: Path | None = None, progress=None) -> Curves:  # noqa: ANN001
    """Learning curves for active and random order over the data's users who have at least ``max(sizes)`` train
    rows; each order is averaged over ``RANDOM_SEEDS`` (random order's shuffles, the queue's random picks).

    Users' heads read the frozen base (``encode``), or, given ``task_prior_base``, the encodings of a task prior
    trained without them (``prior_folds`` priors, each leaving out a fold of the simulated users; by default
    :func:`folds_for_priors`)."""
    if not any(len(data.rows(u, "train")) >= max(sizes) for u in data.users):
        raise ValueError(f"no user of {data.name!r} has {max(sizes)} train rows to reveal")
    started = time.perf_counter()
    users = [u for u in data.users if len(data.rows(u, "train")) >= max(sizes)]
    eligible = len(users)
    users = users[skip_users:]  # e.g. users kept apart to choose the queue's mix on
    if limit_users:
        users = users[:limit_users]
    args = TrainingArguments()
    if task_prior_base is not None:
        folds = prior_folds or folds_for_priors(data, users)
        simulator_of = task_prior_simulators(data, task_prior_base, users, folds, cache=prior_cache,
                                             last_epoch=prior_last_epoch,
                                             progress=lambda message: logger.info("%s", message))
    else:
        shared = _Simulator(data, encode, strength=args.head_prior_strength, weighting=args.class_weighting)
        simulator_of = {user: shared for user in users}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny solves: a second thread only waits on the first
    try:
        curves = _simulate(data, simulator_of, users, sizes=sizes, queue_options=queue_options, progress=progress)
    finally:
        torch.set_num_threads(threads)
    curves.eligible = eligible
    curves.encoder = "task prior" if task_prior_base is not None else "frozen base"
    curves.seconds = time.perf_counter() - started
    return curves


def _simulate(data: EvalData, simulator_of: dict[str, _Simulator], users: list[str], *, sizes: Sequence[int],
              queue_options: dict | None, progress) -> Curves:  # noqa: ANN001
    per_order: dict[str, list[list[tuple[float, float]]]] = {"active": [], "random": []}
    for number, user in enumerate(users, 1):
        simulator = simulator_of[user]
        prior = simulator.prior_without(user)
        for order in ("active", "random"):  # both averaged over the seeds: the queue draws its random share too
            runs = [simulator.curve(user, sizes, order, seed, prior, queue_options) for seed in RANDOM_SEEDS]
            per_order[order].append([tuple(np.mean([run[i] for run in runs], axis=0)) for i in range(len(sizes))])
        if progress:
            progress(number, len(users), user)
    curves = Curves(data_set=data.name, users=users, sizes=list(sizes))
    for order, per_user in per_order.items():
        table = np.array(per_user)  # [users, sizes, (accuracy, macro_f1)]
        curves.accuracy[order] = [float(v) for v in table[:, :, 0].mean(0)]
        curves.macro_f1[order] = [float(v) for v in table[:, :, 1].mean(0)]
    return curves


def cached_encoder(base, cache: Path | None):  # noqa: ANN001, ANN201
    """Frozen base encodings, kept under ``cache`` by a hash of the texts and the base model."""
    def encode(texts: list[str]) -> np.ndarray:
        digest = hashlib.blake2b("\n\x00".join(texts).encode("utf-8", "surrogatepass"), digest_size=12)
        digest.update(base.dims.model_id.encode())
        path = None if cache is None else Path(cache) / f"base-{digest.hexdigest()}.npy"
        if path is not None and path.is_file():
            return np.load(path)
        with torch.inference_mode():
            vectors = base.encode(texts).numpy()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vectors)
        return vectors
    return encode


_WEIGHTING = {"sqrt": "square-root", "balanced": "balanced", "none": "no"}
_HEAD = (f"a MAP head ({_WEIGHTING.get(TrainingArguments().class_weighting, TrainingArguments().class_weighting)} "
         f"class weights, strength {TrainingArguments().head_prior_strength:g})")
MODEL_TEXTS = {
    "task prior": f"the product's own: {_HEAD} on the encodings of the "
                  "default recipe's task prior, pulled toward that prior's head; the prior trains with the default "
                  "recipe's arguments on every train row but the simulated users' (one prior per fold of them where "
                  f"they hold much of the task, so that each keeps at least {PRIOR_SHARE:g} of the rows), stopped at "
                  "the epoch whole-task training chose for the task (accuracy.md), as for users who join a task that "
                  "others have labelled",
    "frozen base": f"{_HEAD} on frozen base encodings, pulled toward a "
                   "prior head fitted the same way on the other users' train labels only (leave-this-user-out); it "
                   "leaves out what the task prior's tuned layers add",
}


def _models_text(results: list[Curves]) -> str:
    encoders = {c.encoder for c in results}
    if len(encoders) == 1:
        return MODEL_TEXTS[encoders.pop()]
    return "; ".join(f"{', '.join(c.data_set for c in results if c.encoder == e)}: {MODEL_TEXTS[e]}"
                     for e in sorted(encoders))


def write_report(results: list[Curves], out: Path, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    (out / "active_learning.json").write_text(json.dumps(
        [{**vars(c), "summary": c.summary()} for c in results], indent=2))
    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, curves in zip(axes[0], results):
        for order, style in (("active", "-o"), ("random", "--s")):
            ax.plot(curves.sizes, curves.macro_f1[order], style, markersize=3, label=f"{order} order")
        reach = curves.labels_to_reach("active", curves.macro_f1["random"][-1])
        ax.axhline(curves.macro_f1["random"][-1], color="grey", linewidth=0.8, linestyle=":")
        if reach is not None:
            ax.axvline(reach, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xticks([s for s in curves.sizes if s % 20 == 0 or s == curves.sizes[0]])
        ax.set_xlabel("labels revealed to the user's model")
        ax.set_ylabel("mean per-user macro-F1 on the users' test rows")
        ax.set_title(f"{curves.data_set} ({len(curves.users)} users)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(out / "active_learning.png", dpi=110)
    plt.close(figure)
    lines = [
        "# Active learning: does the labelling queue's order teach a user's model faster?",
        "",
        "Each user's own train labels are revealed in the queue's order (the product's ordering rule with its default "
        f"mix: {DEFAULT_UNCERTAINTY_WEIGHT:g} times one minus the margin between the user's model's top two labels "
        f"plus {DEFAULT_DISAGREEMENT_WEIGHT:g} times its disagreement with the task prior, and a share of "
        f"{DEFAULT_RANDOM_SHARE:g} of the picks at random; before a user has a model, the prior's least certain "
        "texts; the mix was chosen on other users, research/queue_mix_on_held_out_users.py) or in random "
        "order; each order is the mean of three seeds (random order's shuffles, the queue's random picks). The "
        "user's head is refitted every 10 labels and scored on that user's own test rows, which no model has seen. "
        f"The user's model: {_models_text(results)}. Users with at least 200 train rows take part: their pool is "
        "their own train rows.",
        "",
        "| data set | users | random order, 200 labels | active order, 200 labels | labels active order needs to reach "
        "random order's 200-label figure | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for curves in results:
        s = curves.summary()
        reach = s["active_labels_to_reach_random_at_largest"]
        users = s["users"] if curves.eligible in (0, s["users"]) else f"{s['users']} (the first by name of {curves.eligible})"
        lines.append(f"| {curves.data_set} | {users} | {s['random_macro_f1_at_largest']:.3f} | "
                     f"{s['active_macro_f1_at_largest']:.3f} | {reach if reach is not None else 'not reached'} | "
                     f"{s['seconds']:.0f} |")
    gains = ", ".join(f"{c.data_set} {c.macro_f1['random'][-1] - c.macro_f1['random'][1]:+.3f}" for c in results
                      if len(c.sizes) > 1)
    lines += ["", f"How to read it: from {results[0].sizes[1]} to {results[0].sizes[-1]} labels, random order gains "
              f"{gains} macro-F1. A prior learnt from the other users already carries much of what a user's own "
              "labels teach, so the curves are flat past a few dozen labels; differences of a few thousandths "
              "between the orders are within the spread of the seeds and of which users take part, and the number "
              "of labels at which active order first reaches random order's last figure moves by tens of labels with "
              "them. Seconds are wall time on 2 shared cores, encoding (and training the task priors) included."]
    lines += ["", "Mean per-user macro-F1 by labels revealed:", ""]
    for curves in results:
        lines += [f"**{curves.data_set}**", "", "| labels | " + " | ".join(str(s) for s in curves.sizes) + " |",
                  "|---|" + "---|" * len(curves.sizes)]
        for order in ("active", "random"):
            lines.append(f"| {order} | " + " | ".join(f"{v:.3f}" for v in curves.macro_f1[order]) + " |")
        lines.append("")
    lines += ["![learning curves](active_learning.png)", "", f"Produced by `{command}`.", ""]
    (out / "active_learning.md").write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, action="append", default=[], help="an eval folder (repeatable)")
    parser.add_argument("--render-from", type=Path, action="append", default=[],
                        help="an active_learning.json of an earlier run (repeatable): its data sets join the report "
                             "without being simulated again")
    parser.add_argument("--out", type=Path, required=True, help="folder for active_learning.md/.json/.png")
    parser.add_argument("--cache", type=Path, default=None, help="keep base encodings (and with --encoder prior, each "
                        "fold's prior encodings) here between runs")
    parser.add_argument("--users", type=int, default=None, help="simulate only the first N qualifying users")
    parser.add_argument("--encoder", choices=("base", "prior"), default="base",
                        help="what users' heads read: the frozen base, or a task prior trained without them (the "
                             "default recipe's model; costs one prior per fold)")
    parser.add_argument("--prior-folds", type=int, default=None,
                        help="with --encoder prior: folds of the simulated users, one prior trained without each "
                             f"(default: the fewest that leave each prior {PRIOR_SHARE:g} of the train rows)")
    parser.add_argument("--prior-last-epoch", action="append", default=[], metavar="[DATA_SET=]N",
                        help="with --encoder prior: stop each prior after epoch N (whole-task training's choice for "
                             "the task, shown in accuracy.md); DATA_SET=N for one --data folder's name, N alone for "
                             "the others; repeat for several; default: on its validation loss")
    options = parser.parse_args(argv)
    if options.prior_folds is not None and options.prior_folds < 1:
        parser.error(f"--prior-folds must be at least 1, not {options.prior_folds}")
    try:
        epoch_for = prior_epochs(options.prior_last_epoch, [folder.resolve().name for folder in options.data])
    except ValueError as error:
        parser.error(str(error))
    if not options.data and not options.render_from:
        parser.error("give --data DIR (to simulate) or --render-from FILE (to report an earlier run)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = [Curves(**{k: v for k, v in entry.items() if k != "summary"})
               for path in options.render_from for entry in json.loads(path.read_text())]
    if options.data:
        from localize.base_model import get_base_model

        base = get_base_model()
        encode = cached_encoder(base, options.cache)
    for folder in options.data:
        data = load_eval_data(folder)
        results.append(simulate(data, encode, limit_users=options.users, prior_folds=options.prior_folds,
                                prior_cache=options.cache, prior_last_epoch=epoch_for(data.name),
                                task_prior_base=base if options.encoder == "prior" else None,
                                progress=lambda i, n, u: logger.info("%s: user %d of %d (%s)", data.name, i, n, u)))
        logger.info("%s: %s", data.name, results[-1].summary())
    capped = [len(c.users) for c in results if c.eligible > len(c.users)]
    users = f" --users {options.users or max(capped)}" if options.users or capped else ""
    names = " ".join(f"--data ../shared/data/{c.data_set}" for c in results)
    encoder = "" if options.encoder == "base" else " --encoder prior"
    if options.encoder == "prior" and options.prior_folds:
        encoder += f" --prior-folds {options.prior_folds}"
    if options.encoder == "prior":
        encoder += "".join(f" --prior-last-epoch {value}" for value in options.prior_last_epoch)
    write_report(results, options.out,
                 f"python -m localize.evaluation.active_learning {names}{users}{encoder} --out reports/")


if __name__ == "__main__":
    main()
