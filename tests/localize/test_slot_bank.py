"""Slot banks on their own (the engine's use of them: test_engine.py): resident adapters are views into the
bank's tensors, a freed slot gives its adapter private copies and is reused lowest first, and rows gather their
slots' parameters."""
from __future__ import annotations

import torch

from localize.adapters import make_method
from localize.base_model import BaseDims
from localize.engine import AdapterWeights
from localize.slot_bank import SlotBank

DIMS = BaseDims(model_id="test-base", hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16)


def _head(seed: int) -> AdapterWeights:
    generator = torch.Generator().manual_seed(seed)
    return AdapterWeights(method=make_method("head", {}, DIMS), params={},
                          head={"weight": torch.randn(2, 8, generator=generator),
                                "bias": torch.randn(2, generator=generator)},
                          labels=["no", "yes"], base_model_id=DIMS.model_id)


def test_adapters_are_views_freed_slots_keep_copies_and_are_reused_lowest_first() -> None:
    adapters = [_head(seed) for seed in range(3)]
    originals = [{k: v.clone() for k, v in a.head.items()} for a in adapters]
    bank = SlotBank(adapters[0], limit=4, device=torch.device("cpu"))
    assert [bank.add(a) for a in adapters] == [0, 1, 2] and bank.slots == 3
    for slot, adapter in enumerate(adapters):
        assert adapter.slot == (bank, slot)
        assert adapter.head["weight"].data_ptr() == bank.tensors[("head", "weight")][slot].data_ptr()
        torch.testing.assert_close(adapter.head["weight"], originals[slot]["weight"])
    params, head = bank.gather(torch.tensor([2, 0, 2]))
    assert params == {} and head["weight"].shape == (3, 2, 8)
    torch.testing.assert_close(head["bias"][0], originals[2]["bias"])
    _, view = bank.views(1, 3)
    assert view["weight"].data_ptr() == bank.tensors[("head", "weight")][1].data_ptr()
    bank.remove(1)
    bank.remove(0)
    assert adapters[1].slot is None and adapters[1].head["weight"].data_ptr() != view["weight"].data_ptr()
    newcomer = _head(9)
    assert bank.add(newcomer) == 0  # the lowest freed slot first: occupied slots stay dense
    torch.testing.assert_close(adapters[0].head["weight"], originals[0]["weight"])  # the evicted kept its copy
    torch.testing.assert_close(adapters[1].head["weight"], originals[1]["weight"])
    assert bank.add(_head(10)) == 1 and bank.slots == 3
