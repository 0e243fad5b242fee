"""Adapter-affine request routing for the Serve prediction deployment (rendezvous hashing).

Serve's default router only *prefers* replicas that already report a multiplexed model id, and those reports
reach the routers a moment after the first load, so a user's first few requests can land on several replicas
and load the adapter on each of them. Here every adapter owner (the multiplexed model id) ranks the running
replicas by ``hash(model id, replica id)`` and goes to the first one that accepts the request: the same replica
every time, and when a replica comes or goes only the owners ranked first on it move (rendezvous hashing). A
replica whose queue is full rejects, and the request spills to the owner's next replica, so a hot user is
never stuck behind one replica.

The router runs inside the process that holds the deployment handle (the API), not in the replicas.
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica


def rendezvous_rank(model_id: str, replica_ids: Sequence[str]) -> list[str]:
    """``replica_ids`` in the order ``model_id`` tries them: highest ``hash(model id, replica id)`` first."""

    def score(replica_id: str) -> bytes:
        return hashlib.blake2b(f"{model_id}\0{replica_id}".encode(), digest_size=8).digest()

    return sorted(replica_ids, key=score, reverse=True)


class AdapterAffinityRouter(RequestRouter):
    """Routes each request to the first accepting replica in its owner's rendezvous order.

    Requests without a model id (statistics probes) go to two random replicas, as in Serve's default."""

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if not candidate_replicas:
            return []
        model_id = pending_request.metadata.multiplexed_model_id if pending_request is not None else ""
        if not model_id:
            return [random.sample(candidate_replicas, min(2, len(candidate_replicas)))]
        by_id = {replica.replica_id.unique_id: replica for replica in candidate_replicas}
        # One replica per rank: the router probes rank 1, and moves on only if that replica refuses.
        return [[by_id[replica_id]] for replica_id in rendezvous_rank(model_id, list(by_id))]
