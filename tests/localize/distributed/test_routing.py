"""Rendezvous routing of adapter owners to Serve replicas: stable, spread, minimal movement, spill order."""
from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

import pytest

pytest.importorskip("ray.serve.request_router", reason="the [ray] extra is not installed")

from localize.distributed.routing import AdapterAffinityRouter, rendezvous_rank  # noqa: E402

pytestmark = pytest.mark.ray

REPLICAS = ["r-a", "r-b", "r-c", "r-d"]
OWNERS = [f"task-1/user-{i}" for i in range(4000)]


def test_an_owner_always_gets_the_same_order_whatever_the_listing_order():
    for owner in OWNERS[:50]:
        assert rendezvous_rank(owner, REPLICAS) == rendezvous_rank(owner, list(reversed(REPLICAS)))
        assert sorted(rendezvous_rank(owner, REPLICAS)) == sorted(REPLICAS)


def test_owners_spread_evenly_over_replicas():
    counts = Counter(rendezvous_rank(owner, REPLICAS)[0] for owner in OWNERS)
    assert set(counts) == set(REPLICAS)
    assert all(abs(count - len(OWNERS) / 4) < 0.1 * len(OWNERS) / 4 for count in counts.values()), counts


def test_losing_a_replica_moves_only_its_own_owners_and_each_to_its_next_choice():
    before = {owner: rendezvous_rank(owner, REPLICAS) for owner in OWNERS}
    survivors = [r for r in REPLICAS if r != "r-c"]
    for owner, order in before.items():
        after = rendezvous_rank(owner, survivors)[0]
        assert after == (order[1] if order[0] == "r-c" else order[0])
    grown = REPLICAS + ["r-e"]
    moved = sum(rendezvous_rank(owner, grown)[0] != before[owner][0] for owner in OWNERS)
    assert all(rendezvous_rank(o, grown)[0] in (before[o][0], "r-e") for o in OWNERS)
    assert 0.15 < moved / len(OWNERS) < 0.25  # about 1/5 of the owners move to the new replica, no others


def _replica(unique_id: str) -> SimpleNamespace:
    return SimpleNamespace(replica_id=SimpleNamespace(unique_id=unique_id))


def _request(model_id: str) -> SimpleNamespace:
    return SimpleNamespace(metadata=SimpleNamespace(multiplexed_model_id=model_id))


def test_the_router_offers_one_replica_per_rank_in_rendezvous_order():
    router = AdapterAffinityRouter.__new__(AdapterAffinityRouter)  # choose_replicas needs no router state
    replicas = [_replica(r) for r in REPLICAS]
    ranks = asyncio.run(router.choose_replicas(replicas, _request("task-1/user-7")))
    assert [[r.replica_id.unique_id for r in rank] for rank in ranks] == \
        [[r] for r in rendezvous_rank("task-1/user-7", REPLICAS)]
    # Without a model id (statistics probes): two distinct random replicas, as Serve's default does.
    (probe,) = asyncio.run(router.choose_replicas(replicas, _request("")))
    assert len(probe) == 2 and probe[0] is not probe[1]
    assert asyncio.run(router.choose_replicas([], _request("task-1/user-7"))) == []
