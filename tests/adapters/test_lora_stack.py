"""A LoRA stack: its members run side by side, their pooled encodings concatenated, and its head is their heads'
mean; it never runs through hooks of its own."""
from __future__ import annotations

import pytest
import torch
from localize.adapters import make_method

from localize.engine import forward_pooled

OPTIONS = {"r": 2, "layers": [-1], "sites": ["query", "value"], "members": 2}


def _stack(base, seed=0):
    method = make_method("lora_stack", OPTIONS, base.dims)
    params = method.init_params(base, torch.Generator().manual_seed(seed))
    # B starts at zero (PEFT's LoRA): give every member an update of its own, so members differ.
    params = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(i)) * 0.05 if "lora_B" in k else v
              for i, (k, v) in enumerate(sorted(params.items()))}
    return method, params


def test_a_stacks_encoding_is_its_members_encodings_side_by_side(base):
    method, params = _stack(base)
    assert method.pooled_width == 2 * base.dims.hidden_size
    assert sorted({k.split(".")[1] for k in params}) == ["0", "1"]
    ids, mask = base.tokenize(["gold is up today", "oil slides after the report"])
    hidden = base.run_layers(base.embed(ids), mask, stop=method.start_layer)
    stacked = forward_pooled(base, method, params, hidden, mask)
    members = method.members(params)
    parts = [forward_pooled(base, member, member_params, hidden, mask) for member, member_params in members]
    assert stacked.shape == (2, 2 * base.dims.hidden_size)
    assert torch.allclose(stacked, torch.cat(parts, dim=-1), atol=1e-6)
    assert not torch.allclose(parts[0], parts[1], atol=1e-3)  # each member's own update


def test_a_stacks_head_gives_the_mean_of_its_members_logits(base):
    method, params = _stack(base)
    members = [(p, {"weight": torch.randn(3, base.dims.hidden_size), "bias": torch.randn(3)})
               for _, p in method.members(params)]
    combined, head = method.combine(members)
    assert combined.keys() == params.keys()
    pooled = [torch.randn(4, base.dims.hidden_size) for _ in members]
    mean = torch.stack([x @ h["weight"].T + h["bias"] for x, (_, h) in zip(pooled, members)]).mean(0)
    assert torch.allclose(torch.cat(pooled, dim=-1) @ head["weight"].T + head["bias"], mean, atol=1e-5)
    with pytest.raises(ValueError, match="takes 2 members, not 1"):
        method.combine(members[:1])


@pytest.mark.parametrize("members", [1, 9])
def test_a_stack_names_a_member_count_it_cannot_have(base, members):
    with pytest.raises(ValueError, match=f"members={members}"):
        make_method("lora_stack", {**OPTIONS, "members": members}, base.dims)


def test_a_stack_never_runs_through_hooks_of_its_own(base):
    method, params = _stack(base)
    with pytest.raises(TypeError, match="runs as its members"):
        method.hooks(params, training=False)
