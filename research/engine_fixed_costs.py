"""The engine's fixed work per batch that does not depend on the encoder: each row's adapter family, and each
row's answer from the probabilities. On a CPU the encoder's pass (about a second for 128 texts) hides it; on an H200
the pass takes 5.8 ms and the mixed batch added 3.1 ms (reports/gpu.md). This times both steps for one batch of
``--rows`` users as the engine runs them now and in the per-row forms they replaced on 4 Dec 2026 (copied below).

    python research/engine_fixed_costs.py --rows 128

Status: current (the figures are quoted in reports/gpu.md)."""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from localize.bench.context import BenchContext
from localize.bench.sizes import BenchSizes
from localize.calibration import spread_evenly
from localize.engine import answers


def per_row_family(method) -> tuple:  # noqa: ANN001  (the uncached form: rebuilt from the config on every call)
    return (method.name, tuple(sorted((k, repr(v)) for k, v in method.config.to_dict().items())))


def per_row_answers(rows, probabilities: torch.Tensor) -> list:  # noqa: ANN001
    predictions = []
    for row, (weights, _) in enumerate(rows):
        probs = spread_evenly(probabilities[row, : len(weights.labels)], weights.uniform_share).tolist()
        best = max(range(len(probs)), key=probs.__getitem__)
        predictions.append((weights.labels[best], dict(zip(weights.labels, probs))))
    return predictions


def median_ms(fn, repeats: int = 300) -> float:  # noqa: ANN001
    fn()
    times = []
    for _ in range(repeats):
        begun = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begun)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=128, help="users (rows) in the batch")
    rows_wanted = parser.parse_args().rows
    torch.set_num_threads(1)
    ctx = BenchContext(BenchSizes(batch=rows_wanted, registered_users=max(rows_wanted, 16)), {})
    for kind in ("head", "lora_top"):
        _, adapters = ctx.registered(kind)
        methods = [weights.method for weights in adapters[:rows_wanted]]
        cached = median_ms(lambda: [m.family() for m in methods])
        rebuilt = median_ms(lambda: [per_row_family(m) for m in methods])
        print(f"{kind}: family of {len(methods)} rows: {rebuilt:.3f} ms rebuilt per row, {cached:.3f} ms now")
    _, adapters = ctx.registered("head")
    rows = [(weights, "text") for weights in adapters[:rows_wanted]]
    for i, (weights, _) in enumerate(rows):
        # Calibrated versions carry a uniform share; half the rows here.
        weights.meta = {**weights.meta, "metrics": {"uniform_share": 0.04 if i % 2 else 0.0}}
    probabilities = torch.softmax(torch.randn(len(rows), len(rows[0][0].labels)), -1)
    now = answers(rows, probabilities)
    assert [(p.label, p.probabilities) for p in now] == per_row_answers(rows, probabilities)  # the same answers
    print(f"answers of {len(rows)} rows: {median_ms(lambda: per_row_answers(rows, probabilities)):.3f} ms row by "
          f"row, {median_ms(lambda: answers(rows, probabilities)):.3f} ms now")
    ctx.close()


if __name__ == "__main__":
    main()
