"""The API's side of Ray Serve prediction: :class:`RayPredictor` sends rows (each naming its serving adapter by an
:class:`AdapterRef`, never a path) through a Serve handle and returns the rows' predictions in order. Rows of one
adapter are one request; rows of many (a fan-out, a mixed batch) are one request per replica: each owner goes with
the replica ranked first for it (``routing.rendezvous_rank``), the one the router would send it to alone.

It stands where the embedded engine stands in the data flow (services hand it rows; it imports no service and no
runtime), so ``Runtime.remote_predictor`` can hold one. The replicas it calls are defined in ``serving``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from localize.distributed.cluster import connect, import_ray
from localize.engine import Prediction
from localize.errors import LocalizeError, ServingUnavailableError
from localize.settings import Settings

logger = logging.getLogger(__name__)

DEPLOYMENT = "PredictionReplica"  # the Serve deployment's name (``serving`` defines it)
REPLICA_IDS_TTL_SECONDS = 5.0  # how long a listing of the replicas is reused (a stale one only costs loads)


@dataclass(frozen=True)
class AdapterRef:
    """What a replica needs to load one stored adapter version (never a path a client sent)."""

    version_id: int
    store_key: str
    version: int
    files: dict[str, str]

    @classmethod
    def from_row(cls, row: Any) -> AdapterRef:  # noqa: ANN401  (an AdapterVersion row)
        return cls(version_id=row.id, store_key=row.store_key, version=row.version, files=dict(row.files or {}))

    @property
    def model_id(self) -> str:
        """The Serve multiplexing id: the adapter's owner (task and user), the same across its versions."""
        return self.store_key


class RayPredictor:
    """The API side: one handle call per replica (per adapter when there is one), all in flight at once, answers
    in row order."""

    def __init__(self, settings: Settings, handle: Any = None) -> None:  # noqa: ANN401
        self.settings = settings
        self._handle = handle
        self._lock = threading.Lock()
        self._replica_ids: tuple[float, list[str]] = (float("-inf"), [])

    @property
    def handle(self) -> Any:  # noqa: ANN401
        with self._lock:
            if self._handle is None:
                connect(self.settings.ray_address)
                from ray import serve

                try:
                    self._handle = serve.get_app_handle(self.settings.ray_serve_app)
                except Exception as error:  # noqa: BLE001  (Serve raises several kinds when the app is absent)
                    raise ServingUnavailableError(
                        f"Ray Serve application {self.settings.ray_serve_app!r} is not running on the cluster at "
                        f"{self.settings.ray_address!r} ({error}); start it with `localize serve --ray ADDRESS`"
                    ) from None
            return self._handle

    def predict(self, rows: Sequence[tuple[AdapterRef, str]]) -> list[Prediction]:
        return [Prediction(out["label"], out["probabilities"], ref.version)
                for (ref, _), out in zip(rows, self.predict_raw(rows)["rows"])]

    def predict_raw(self, rows: Sequence[tuple[AdapterRef, str]]) -> dict[str, Any]:
        """Row outputs in order, plus which replica answered each adapter (``replicas``: model id -> replica)."""
        import_ray()
        from ray.exceptions import RayTaskError

        groups: dict[int, list[int]] = {}
        refs: dict[int, AdapterRef] = {}
        for index, (ref, _) in enumerate(rows):
            groups.setdefault(ref.version_id, []).append(index)
            refs[ref.version_id] = ref
        handle = self.handle
        # One request per replica: the owners ranked first on it go together, routed by the first of them (the
        # router ranks by the same hash, so it picks that replica). One adapter alone keeps the plain request.
        batches: dict[str, list[int]] = {}
        if len(groups) == 1:
            batches[""] = list(groups)
        else:
            owners = self.replica_owners([refs[version_id].model_id for version_id in groups])
            for version_id in groups:
                batches.setdefault(owners[refs[version_id].model_id], []).append(version_id)
        calls = {}
        for members in batches.values():
            lead = handle.options(multiplexed_model_id=refs[members[0]].model_id)
            if len(members) == 1:
                calls[tuple(members)] = lead.predict.remote(refs[members[0]], [rows[i][1] for i in groups[members[0]]])
            else:
                calls[tuple(members)] = lead.predict_many.remote(
                    [refs[v] for v in members], [[rows[i][1] for i in groups[v]] for v in members])
        outputs: list[dict[str, Any] | None] = [None] * len(rows)
        replicas: dict[str, str] = {}
        for members, call in calls.items():
            try:
                answer = call.result(timeout_s=self.settings.ray_request_timeout_seconds)
            except RayTaskError as error:
                cause = getattr(error, "cause", None)
                if isinstance(cause, LocalizeError):
                    raise cause from None
                raise ServingUnavailableError(f"prediction replica failed: {_last_line(error)}") from None
            except LocalizeError:
                raise
            except Exception as error:  # noqa: BLE001  (timeouts, replicas lost, the cluster unreachable)
                raise ServingUnavailableError(f"prediction replicas did not answer: {type(error).__name__}: "
                                              f"{_last_line(error)}") from None
            indexes = [i for version_id in members for i in groups[version_id]]
            for version_id in members:
                replicas[refs[version_id].model_id] = answer["replica"]
            for index, out in zip(indexes, answer["rows"]):
                outputs[index] = out
        return {"rows": outputs, "replicas": replicas, "calls": len(calls)}

    def replica_owners(self, model_ids: Sequence[str]) -> dict[str, str]:
        """Each model id's first replica in its rendezvous order (``""`` for all when none can be listed)."""
        from localize.distributed.routing import rendezvous_rank

        replica_ids = self.replica_ids()
        if not replica_ids:
            return {model_id: "" for model_id in model_ids}
        return {model_id: rendezvous_rank(model_id, replica_ids)[0] for model_id in model_ids}

    def replica_ids(self) -> list[str]:
        """The running replicas' ids, as the router knows them (Serve names each replica actor after its id);
        listed at most every ``REPLICA_IDS_TTL_SECONDS``."""
        listed_at, ids = self._replica_ids
        if time.monotonic() - listed_at < REPLICA_IDS_TTL_SECONDS:
            return ids
        ray = import_ray()
        prefix = f"SERVE_REPLICA::{self.settings.ray_serve_app}#{DEPLOYMENT}#"
        try:
            ids = sorted(actor["name"][len(prefix):] for actor in ray.util.list_named_actors(all_namespaces=True)
                         if actor["name"].startswith(prefix))
        except Exception as error:  # noqa: BLE001  (the listing is an optimisation: without it, one request)
            logger.warning("cannot list the prediction replicas (%s): a request with many owners goes to one", error)
            ids = []
        self._replica_ids = (time.monotonic(), ids)
        return ids


def _last_line(error: Exception) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
