"""Several task priors served as one: the mean of their LoRA updates is one LoRA of their summed rank.

A task prior trained on a few thousand labels moves with its seed (its LoRA's starting weights, dropout, the order
of its batches), and every user's head reads it. Averaging priors trained from several seeds removes much of that
luck. Their users' probabilities could be averaged, but that runs the tuned layers once per prior at serving. The
mean of their *weight updates* needs no such cost: prior ``k`` adds ``s_k B_k A_k`` to a linear map, and the mean
``sum_k s_k B_k A_k / K`` is exactly the LoRA whose ``A`` stacks the ``A_k`` and whose ``B`` places the
``s_k B_k / K`` side by side (rank ``sum r_k``, scale 1). Every prior starts from the same frozen base and moves
little from it, which is when averaging weights can behave like averaging the models (a "model soup").

Shared by research scripts (not a script itself). Status: measured in reports/findings.md, round 19, and not adopted:
the merged prior gained nothing over one prior on HS-Brexit and lost on the demo's new sentences.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from localize.adapters import make_method
from localize.base_model import BaseDims
from localize.engine import AdapterWeights


def merge_lora_priors(priors: Sequence[AdapterWeights], dims: BaseDims) -> AdapterWeights:
    """One LoRA adapter whose update of every adapted map is the mean of the ``priors``' updates, and whose head is
    the mean of their heads (the centre users' heads are pulled toward). The priors must adapt the same layers and
    sites; their ranks and scales may differ."""
    if not priors:
        raise ValueError("merging task priors needs at least one prior")
    first = priors[0]
    if any(p.method.name != "lora" for p in priors):
        raise ValueError(f"only LoRA priors can be merged, not {sorted({p.method.name for p in priors})}")
    shape = [(sorted(p.method.layers), sorted(p.method.config.sites), sorted(p.params)) for p in priors]
    if any(s[:2] != shape[0][:2] for s in shape):
        raise ValueError("the priors adapt different layers or sites; their updates cannot be averaged")
    if any(p.labels != first.labels or p.base_model_id != first.base_model_id for p in priors):
        raise ValueError("the priors have different labels or base models; they cannot be merged")
    count = len(priors)
    options = first.method.config.to_dict() | {"r": sum(p.method.config.r for p in priors)}
    options["alpha"] = float(options["r"])  # scale 1: each prior's own scale goes into its block of B
    params: dict[str, torch.Tensor] = {}
    for key in first.params:
        if key.endswith("lora_A.weight"):
            params[key] = torch.cat([p.params[key] for p in priors], dim=0)
        elif key.endswith("lora_B.weight"):
            params[key] = torch.cat([p.params[key] * p.method.scale / count for p in priors], dim=1)
        else:
            raise ValueError(f"a LoRA prior has a parameter {key!r} that is not an A or B matrix")
    head = {name: torch.stack([p.head[name] for p in priors]).mean(0) for name in first.head}
    meta = {"merged_priors": count}
    return AdapterWeights(make_method("lora", options, dims), params, head, list(first.labels), first.base_model_id,
                          meta=meta)
