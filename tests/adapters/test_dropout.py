"""The CPU dropout LoRA trains with: dropout's distribution and gradient, repeatable under ``torch.manual_seed``."""
from __future__ import annotations

import pytest
import torch

from localize.adapters.dropout import dropout


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_drops_a_share_p_and_scales_the_rest_to_keep_the_mean(p):
    torch.manual_seed(0)
    out = dropout(torch.ones(400_001), p, True)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - p) < 0.005  # 400k draws: the binomial's spread is under 0.001
    kept = out[out != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - p)), rtol=1e-4, atol=0)
    assert abs(out.mean().item() - 1.0) < 0.01


def test_gradient_flows_through_the_kept_elements_only():
    x = torch.randn(8, 5, 16, requires_grad=True)
    torch.manual_seed(1)
    out = dropout(x, 0.3, True)
    out.sum().backward()
    kept = out.detach() != 0
    torch.testing.assert_close(x.grad[kept], torch.full_like(x.grad[kept], 1 / 0.7), rtol=1e-4, atol=0)
    assert (x.grad[~kept] == 0).all() and 0 < (~kept).sum() < kept.sum()


def test_the_same_seed_draws_the_same_mask_and_masks_differ_between_calls():
    x = torch.randn(4, 7, 32)
    torch.manual_seed(3)
    first, second = dropout(x, 0.2, True), dropout(x, 0.2, True)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.2, True), first)
    assert not torch.equal(first == 0, second == 0)


def test_off_when_not_training_or_p_is_zero_and_keeps_bfloat16():
    x = torch.randn(3, 4)
    assert dropout(x, 0.5, False) is x and dropout(x, 0.0, True) is x
    assert dropout(x.bfloat16(), 0.5, True).dtype == torch.bfloat16
