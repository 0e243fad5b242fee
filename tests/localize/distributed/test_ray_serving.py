"""The prediction path on Ray Serve: predictions equal the embedded path's for the same adapters, a user's requests
stay on one replica, rows of different users share forward passes, and failures surface as clear errors."""
from __future__ import annotations

import asyncio

import pytest
import torch
from fastapi.testclient import TestClient
from ray_support import DEFAULT_SHORT, HEAD, LORA_TOP, clone_adapter, seed_task

from localize.db.session import session_scope
from localize.demo_data import SHOWCASE
from localize.distributed.predictor import AdapterRef
from localize.engine import Engine
from localize.errors import AdapterError
from localize.labels_io import LabelRow
from localize.runtime import Runtime
from localize.services import jobs as job_service
from localize.services import predictions as prediction_service
from localize.services.adapters import active_version
from localize.services.labels import list_labels, upsert_labels
from localize.services.predictions import PredictionRequest
from localize.services.tasks import get_task
from localize.services.users import get_user
from localize.settings import Settings
from localize.worker import Worker

pytestmark = pytest.mark.ray

TEXTS = SHOWCASE[:4] + ["oil slides as inventories swell", "markets are flat today"]


def _train(runtime: Runtime, user: str | None, args) -> None:  # noqa: ANN001
    with session_scope(runtime.database) as session:
        task = get_task(session=session, name="gold")
        owner = get_user(session=session, name=user) if user is not None else None
        job_service.queue_training(session=session, task=task, user=owner, args=args)
    Worker(runtime).run_once()


def _predict(runtime: Runtime, rows: list[tuple[str, str]]):  # noqa: ANN202
    with session_scope(runtime.database) as session:
        return prediction_service.predict(session=session, runtime=runtime,
                                          requests=[PredictionRequest(user=u, task="gold", text=t) for u, t in rows])


def _assert_same(ray_results, embedded_results) -> None:  # noqa: ANN001
    assert len(ray_results) == len(embedded_results)
    for remote, local in zip(ray_results, embedded_results):
        assert (remote.user, remote.text, remote.label, remote.version) == (local.user, local.text, local.label,
                                                                             local.version)
        assert remote.probabilities.keys() == local.probabilities.keys()
        for label, probability in local.probabilities.items():
            assert remote.probabilities[label] == pytest.approx(probability, abs=1e-5)


@pytest.fixture(scope="module")
def deployed(ray_cluster, tmp_path_factory):
    """John (head) and Jane (LoRA on the top layer) trained in the embedded path; the prediction application
    deployed with two replicas on the same database and store; runtimes for both paths."""
    from localize.distributed.serving import deploy

    home = tmp_path_factory.mktemp("serve-home")
    embedded = Runtime(Settings(home=home, admin_key="k"))
    embedded.upgrade_database()
    seed_task(embedded, rows_per_user=40)
    _train(embedded, "john", HEAD)
    _train(embedded, "jane", LORA_TOP)
    # Ann (Jane's labels) gets the default recipe: a head that reads the task prior's tuned top layers.
    with session_scope(embedded.database) as session:
        task = get_task(session=session, name="gold")
        jane_rows = list_labels(session=session, task=task, user=get_user(session=session, name="jane"), limit=1000)[0]
        upsert_labels(session=session, task=task, rows=[LabelRow(line=i + 1, user="ann", text=text, label=row.label)
                                                        for i, (row, text) in enumerate(jane_rows)])
    _train(embedded, None, DEFAULT_SHORT)
    _train(embedded, "ann", DEFAULT_SHORT)
    settings = Settings(home=home, admin_key="ray-serving-admin-key", serving="ray", ray_address="local",
                        ray_serve_app="localize-test",
                        ray_serve_replicas=2, ray_replica_cpus=0.5, ray_batch_wait_ms=20)
    deploy(settings)
    yield embedded, Runtime(settings)
    from ray import serve

    serve.delete("localize-test")


def test_predictions_through_ray_serve_equal_the_embedded_path(deployed):
    embedded, remote = deployed
    # Mixed users and methods in one request: a head, a LoRA, and a head on the task prior's tuned encoder.
    rows = [(user, text) for text in TEXTS for user in ("john", "jane", "ann")]
    ray_results = _predict(remote, rows)
    _assert_same(ray_results, _predict(embedded, rows))
    # Each row was answered by its own user's adapter: opposite traders disagree on some text.
    assert [r.label for r in ray_results if r.user == "john"] != [r.label for r in ray_results if r.user == "jane"]

    with session_scope(embedded.database) as session:
        task = get_task(session=session, name="gold")
        remote_fanout = prediction_service.fanout(session=session, runtime=remote, task=task, text=TEXTS[0])
        local_fanout = prediction_service.fanout(session=session, runtime=embedded, task=task, text=TEXTS[0])
    _assert_same(remote_fanout, local_fanout)


def test_the_http_api_answers_through_the_replicas_with_routes_and_auth_unchanged(deployed):
    from localize.api.app import create_app

    embedded, remote = deployed
    with TestClient(create_app(remote.settings)) as client:
        assert client.post("/tasks/gold/users/john/predict", json={"texts": TEXTS}).status_code == 401
        response = client.post("/tasks/gold/users/john/predict", json={"texts": TEXTS},
                               headers={"Authorization": "Bearer ray-serving-admin-key"})
    assert response.status_code == 200, response.text
    local = _predict(embedded, [("john", text) for text in TEXTS])
    for answer, expected in zip(response.json(), local):
        assert answer["label"] == expected.label and answer["version"] == expected.version
        assert answer["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)


def _replica_ids(app: str) -> list[str]:
    import ray

    prefix = f"SERVE_REPLICA::{app}#PredictionReplica#"  # Serve's named replica actors (no dashboard needed)
    return [actor["name"][len(prefix):] for actor in ray.util.list_named_actors(all_namespaces=True)
            if actor["name"].startswith(prefix)]


def test_a_user_stays_on_the_replica_that_holds_their_adapter(deployed):
    from concurrent.futures import ThreadPoolExecutor

    from localize.distributed.routing import rendezvous_rank
    from localize.distributed.serving import AdapterRef

    embedded, remote = deployed
    with session_scope(embedded.database) as session:
        task = get_task(session=session, name="gold")
        refs = {user: AdapterRef.from_row(active_version(session=session, task=task,
                                                         user=get_user(session=session, name=user)))
                for user in ("john", "jane")}
    calls = [(user, ref, TEXTS[i % len(TEXTS)]) for i in range(12) for user, ref in refs.items()]
    # A burst first (concurrent first requests are where preference-only routing loads an adapter twice), then
    # sequential rounds; without routing, 24 requests of a user would all land on one of 2 replicas 1e-7 of the time.
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda call: (call[0], call[1], remote.remote_predictor.predict_raw(
            [(call[1], call[2])])), calls))
    answers += [(user, ref, remote.remote_predictor.predict_raw([(ref, text)])) for user, ref, text in calls]
    seen: dict[str, set[str]] = {"john": set(), "jane": set()}
    for user, ref, answer in answers:
        seen[user].add(answer["replicas"][ref.model_id].split("@")[0])
    assert all(len(replicas) == 1 for replicas in seen.values()), seen
    replica_ids = _replica_ids(remote.settings.ray_serve_app)
    assert len(replica_ids) == 2
    for user, ref in refs.items():  # the replica is the first of the owner's rendezvous order
        assert seen[user] == {rendezvous_rank(ref.model_id, replica_ids)[0]}


class CountingHandle:
    """A Serve handle that records the owner each call is routed by (one ``options`` per call)."""

    def __init__(self, handle) -> None:  # noqa: ANN001
        self.handle = handle
        self.routed_by: list[str] = []

    def options(self, **options):  # noqa: ANN003, ANN201
        self.routed_by.append(options["multiplexed_model_id"])
        return self.handle.options(**options)


def test_a_fanout_is_one_serve_call_per_replica_not_one_per_user(deployed):
    from localize.distributed.routing import rendezvous_rank

    embedded, remote = deployed
    clone_adapter(embedded, task_name="gold", source="ann", names=[f"fan{i}" for i in range(12)])
    predictor = remote.remote_predictor
    counting = CountingHandle(predictor.handle)
    predictor._handle = counting
    try:
        with session_scope(embedded.database) as session:
            task = get_task(session=session, name="gold")
            remote_fanout = prediction_service.fanout(session=session, runtime=remote, task=task, text=TEXTS[1])
            local_fanout = prediction_service.fanout(session=session, runtime=embedded, task=task, text=TEXTS[1])
            refs = [AdapterRef.from_row(active_version(session=session, task=task, user=get_user(session=session,
                                                                                               name=r.user)))
                    for r in remote_fanout]
        _assert_same(remote_fanout, local_fanout)
        assert len(remote_fanout) == 15  # john, jane, ann and 12 copies of ann's adapter
        replica_ids = _replica_ids(remote.settings.ray_serve_app)
        owners = {ref.model_id: rendezvous_rank(ref.model_id, replica_ids)[0] for ref in refs}
        # One call per replica that owns some of the users (both, with 15 users: 2^-14 odds of all on one).
        assert len(counting.routed_by) == len(set(owners.values())) == 2, counting.routed_by
        # Each call is routed by an owner of its replica, so the router sends it where its users are resident.
        assert {owners[model_id] for model_id in counting.routed_by} == set(replica_ids)
        answered = predictor.predict_raw([(ref, TEXTS[2]) for ref in refs])
        assert answered["calls"] == 2
        assert {model_id: replica.split("@")[0] for model_id, replica in answered["replicas"].items()} == owners
    finally:
        predictor._handle = counting.handle


def test_a_new_active_version_reaches_the_replicas_with_the_next_request(deployed):
    embedded, remote = deployed
    # Forced to serve: the new version's reaching the replicas is the point, not whether it scores above version 1.
    _train(embedded, "john", HEAD.__class__(**{**HEAD.to_dict(), "seed": 1, "max_epochs": 5,
                                               "force_activation": True}))
    rows = [("john", text) for text in TEXTS]
    ray_results = _predict(remote, rows)
    assert {r.version for r in ray_results} == {2}
    _assert_same(ray_results, _predict(embedded, rows))


def test_a_corrupt_adapter_file_is_an_adapter_error_not_a_hang(deployed):
    from localize.distributed.serving import AdapterRef

    embedded, remote = deployed
    with session_scope(embedded.database) as session:
        row = active_version(session=session, task=get_task(session=session, name="gold"),
                             user=get_user(session=session, name="jane"))
        ref = AdapterRef.from_row(row)
    tampered = AdapterRef(version_id=10_000, store_key=ref.store_key, version=ref.version,
                          files={name: "0" * 64 for name in ref.files})
    with pytest.raises(AdapterError, match="hash|sha256|checksum|corrupt"):
        remote.remote_predictor.predict([(tampered, "gold is up")])


def test_rows_of_different_users_share_one_forward_pass(base, runtime, tiny_texts):
    """The replica's batcher: concurrent requests of different users and methods become one engine call, and each
    request gets back exactly its own rows' predictions."""
    from localize.distributed.serving import RowBatcher
    from localize.training import Trainer
    from localize.training_args import TrainingArguments

    texts, john_labels, jane_labels, label_set = tiny_texts
    args = TrainingArguments(method="head", max_epochs=2, method_options={"hidden": 0})
    john = Trainer(base, args, texts, john_labels, label_set).train()
    jane = Trainer(base, TrainingArguments(method="lora", max_epochs=1, method_options={"r": 2, "layers": [-1]}),
                   texts, jane_labels, label_set).train()
    engine = Engine(base)
    calls = []

    def predict(rows):  # noqa: ANN001, ANN202
        calls.append(len(rows))
        return engine.predict(rows)

    batcher = RowBatcher(predict, max_rows=64, wait_seconds=0.05)
    requests = [[(john, t) for t in texts[:3]], [(jane, t) for t in texts[:3]], [(john, texts[5])]]

    async def send_all():  # noqa: ANN202
        return await asyncio.gather(*(batcher.submit(rows) for rows in requests))

    answers = asyncio.run(send_all())
    assert calls == [7] and batcher.passes == 1 and batcher.requests == 3
    for rows, answer in zip(requests, answers):
        expected = engine.predict(rows)
        assert [a.label for a in answer] == [e.label for e in expected]
        for a, e in zip(answer, expected):
            assert torch.allclose(torch.tensor(list(a.probabilities.values())),
                                  torch.tensor(list(e.probabilities.values())), atol=1e-6)


def test_a_missing_serve_application_is_a_clear_service_error(deployed):
    from localize.distributed.serving import AdapterRef, RayPredictor
    from localize.errors import ServingUnavailableError

    _, remote = deployed
    settings = remote.settings.model_copy(update={"ray_serve_app": "not-deployed"})
    ref = AdapterRef(version_id=1, store_key="task-1/user-1", version=1, files={})
    with pytest.raises(ServingUnavailableError, match="'not-deployed' is not running.*localize serve --ray"):
        RayPredictor(settings).predict([(ref, "gold is up")])
