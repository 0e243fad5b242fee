"""``per_row_linear``: its shared, per-row, fan-out (one vector for every row) and autograd paths agree."""
from __future__ import annotations

import torch

from localize.adapters.base import per_row_linear


def _reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = torch.einsum("boi,bi->bo", weight, x)
    return out if bias is None else out + bias


def test_per_row_weights_match_a_reference_in_every_path():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(5, 3, 4, generator=generator)
    bias = torch.randn(5, 3, generator=generator)
    x = torch.randn(5, 4, generator=generator)
    with torch.inference_mode():  # serving: one matrix-vector product per row
        torch.testing.assert_close(per_row_linear(x, weight, bias), _reference(x, weight, bias))
        one = x[:1].expand(5, -1)  # fan-out: one vector for every row, a single matrix-vector product
        assert one.stride(0) == 0
        torch.testing.assert_close(per_row_linear(one, weight), _reference(one, weight, None))
    trained = weight.clone().requires_grad_(True)  # training: autograd through the batched matmul
    out = per_row_linear(x, trained, bias)
    torch.testing.assert_close(out.detach(), _reference(x, weight, bias))
    out.sum().backward()
    assert trained.grad is not None and trained.grad.shape == weight.shape


def test_sequences_and_shared_weights():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 4, generator=generator)  # [batch, seq, in]
    weight = torch.randn(2, 3, 4, generator=generator)
    expected = torch.einsum("bsi,boi->bso", x, weight)
    torch.testing.assert_close(per_row_linear(x, weight), expected)
    shared = torch.randn(3, 4, generator=generator)
    torch.testing.assert_close(per_row_linear(x, shared), x @ shared.T)
