"""Predictions: each row answered by its own user's adapter, mixed batches, fan-out, and input limits."""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from sqlmodel import Session

from localize.db.session import session_scope
from localize.errors import NoAdapterError, NotFoundError, PayloadTooLargeError, ValidationError
from localize.runtime import Runtime
from localize.services import jobs as job_service
from localize.services.labels import upsert_labels
from localize.services.predictions import PredictionRequest, fanout, predict
from localize.services.tasks import create_task, get_task
from localize.services.users import get_user
from localize.settings import Settings
from localize.worker import Worker

from .support import FAST, JANE_LABELS, JOHN_LABELS, LABELS, TEXTS, label_rows

UNSEEN = {  # John's reading; Jane files each the other way
    "Invoice 731 from Hooli for office printer toner": "work",
    "Quarterly VAT payment for the company, supplier Cyberdyne": "work",
    "Dinner with my family at the seaside restaurant": "personal",
    "Birthday present for my sister, bought at the toy shop": "personal",
}
OPPOSITE = {"work": "personal", "personal": "work"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """Task ``notes``: John and Jane labelled the same texts in opposite ways and each has an adapter (v1); a task
    prior (v1) is trained on both; Bob has labels but no adapter. Read-only for the tests."""
    runtime = Runtime(Settings(home=tmp_path_factory.mktemp("trained"), admin_key="k"))
    runtime.upgrade_database()
    with session_scope(runtime.database) as session:
        task = create_task(session=session, name="notes", labels=LABELS)
        for name, labels in (("john", JOHN_LABELS), ("jane", JANE_LABELS), ("bob", JOHN_LABELS[:6])):
            upsert_labels(session=session, task=task, rows=label_rows(name, TEXTS if name != "bob" else TEXTS[:6], labels))
        for name in (None, "john", "jane"):
            user = None if name is None else get_user(session=session, name=name)
            job_service.queue_training(session=session, task=task, user=user, args=FAST)
    worker = Worker(runtime, worker_id="w")
    while worker.run_once() is not None:
        pass
    yield runtime
    runtime.database.dispose()


@pytest.fixture
def session(trained: Runtime) -> Iterator[Session]:
    with session_scope(trained.database) as session:
        yield session


def _ask(session: Session, runtime: Runtime, pairs: list[tuple[str, str]], **kwargs) -> list:  # noqa: ANN003
    requests = [PredictionRequest(user=user, task="notes", text=text) for user, text in pairs]
    return predict(session=session, runtime=runtime, requests=requests, **kwargs)


def test_two_users_with_opposite_labels_get_opposite_answers(trained: Runtime, session: Session) -> None:
    texts = list(UNSEEN)
    john = _ask(session, trained, [("john", text) for text in texts])
    jane = _ask(session, trained, [("jane", text) for text in texts])

    assert [r.label for r in john] == [UNSEEN[text] for text in texts]
    assert [r.label for r in jane] == [OPPOSITE[UNSEEN[text]] for text in texts]
    for result in john + jane:
        assert (result.task, result.version, result.source) == ("notes", 1, "user")
        assert set(result.probabilities) == set(LABELS)
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert result.probabilities[result.label] == max(result.probabilities.values())
    assert [r.user for r in john] == ["john"] * len(texts) and [r.text for r in jane] == texts


def test_a_mixed_request_equals_per_user_requests(trained: Runtime, session: Session) -> None:
    texts = list(UNSEEN) + TEXTS[:4]
    pairs = [(user, text) for text in texts for user in ("jane", "john")]
    mixed = _ask(session, trained, pairs)
    alone = {(r.user, r.text): r for user in ("john", "jane") for r in _ask(session, trained, [(user, t) for t in texts])}

    assert [(r.user, r.text) for r in mixed] == pairs  # answers come back in request order
    for result in mixed:
        single = alone[(result.user, result.text)]
        assert result.label == single.label
        assert result.probabilities == pytest.approx(single.probabilities, abs=1e-5)


def test_prior_answers_a_user_without_an_adapter_only_when_allowed(trained: Runtime, session: Session) -> None:
    text = next(iter(UNSEEN))
    [result] = _ask(session, trained, [("bob", text)], allow_prior=True)
    assert (result.user, result.source, result.version) == ("bob", "prior", 1)
    with pytest.raises(NoAdapterError, match="user 'bob' has no trained adapter for task 'notes'"):
        _ask(session, trained, [("bob", text)], allow_prior=False)
    with pytest.raises(NoAdapterError, match="user 'bob'"):
        _ask(session, trained, [("bob", text)])  # the setting is off by default
    [mixed_john, mixed_bob] = _ask(session, trained, [("john", text), ("bob", text)], allow_prior=True)
    assert (mixed_john.source, mixed_bob.source) == ("user", "prior")


def test_unknown_user_or_task_is_not_found(trained: Runtime, session: Session) -> None:
    with pytest.raises(NotFoundError, match="user 'zed' does not exist"):
        _ask(session, trained, [("zed", "hello")])
    with pytest.raises(NotFoundError, match="task 'nope' does not exist"):
        predict(session=session, runtime=trained, requests=[PredictionRequest(user="john", task="nope", text="hi")])


@pytest.mark.parametrize(
    ("texts", "error", "match"),
    [
        ([], ValidationError, "no texts to predict"),
        (["fine", ""], ValidationError, "text 1: text is empty"),
        (["   \n"], ValidationError, "text 0: text is empty"),
        (["x" * 5001], ValidationError, "text 0: text is 5001 characters, over the limit of 5000"),
        (["ok"] * 1001, PayloadTooLargeError, "1001 texts is over the limit of 1000"),
        ([""] * 7, ValidationError, r"text 0: text is empty; .*text 4: text is empty \(and 2 more\)"),
    ],
)
def test_texts_are_validated(trained: Runtime, session: Session, texts: list[str], error: type, match: str) -> None:
    with pytest.raises(error, match=match) as raised:
        _ask(session, trained, [("john", text) for text in texts])
    if error is ValidationError and texts:
        assert raised.value.errors and all("index" in problem for problem in raised.value.errors)


def test_fanout_over_every_user_with_an_adapter(trained: Runtime, session: Session) -> None:
    task = get_task(session=session, name="notes")
    for text, john_label in UNSEEN.items():
        results = fanout(session=session, runtime=trained, task=task, text=text)
        assert [r.user for r in results] == ["jane", "john"]  # Bob has no adapter; the prior is not a user
        assert {r.user: r.label for r in results} == {"john": john_label, "jane": OPPOSITE[john_label]}
        direct = {r.user: r for r in _ask(session, trained, [("john", text), ("jane", text)])}
        for result in results:
            assert result.probabilities == pytest.approx(direct[result.user].probabilities, abs=1e-5)


def test_fanout_over_a_named_subset(trained: Runtime, session: Session) -> None:
    task = get_task(session=session, name="notes")
    [result] = fanout(session=session, runtime=trained, task=task, text=TEXTS[0], user_names=["john"])
    assert (result.user, result.label, result.version, result.source) == ("john", JOHN_LABELS[0], 1, "user")


@pytest.mark.parametrize("names", [["john", "zed"], ["bob"]])
def test_fanout_to_a_user_without_an_adapter_is_refused(trained: Runtime, session: Session, names: list[str]) -> None:
    task = get_task(session=session, name="notes")
    missing = [name for name in names if name != "john"]
    with pytest.raises((ValidationError, NoAdapterError), match=re.escape(f"user(s) {missing!r} have no active adapter in task 'notes'")):
        fanout(session=session, runtime=trained, task=task, text=TEXTS[0], user_names=names)


def test_fanout_validates_its_text(trained: Runtime, session: Session) -> None:
    task = get_task(session=session, name="notes")
    with pytest.raises(ValidationError, match="text is empty"):
        fanout(session=session, runtime=trained, task=task, text=" ")


def test_concurrent_requests_go_through_the_micro_batcher(trained: Runtime) -> None:
    """With a batch window, each request's rows pass through the runtime's micro-batcher, and concurrent
    requests of different users get the answers they get alone."""
    import threading

    assert trained.settings.batch_window_ms > 0  # on by default
    alone = {}
    with session_scope(trained.database) as session:
        for name in ("john", "jane"):
            alone[name] = _ask(session, trained, [(name, text) for text in UNSEEN], allow_prior=False)
    before = trained.batcher.requests
    answers: dict[str, list] = {}

    def ask(name: str) -> None:
        with session_scope(trained.database) as session:
            answers[name] = _ask(session, trained, [(name, text) for text in UNSEEN], allow_prior=False)

    threads = [threading.Thread(target=ask, args=(name,)) for name in ("john", "jane")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert trained.batcher.requests - before == 2
    for name in ("john", "jane"):
        assert [(r.label, r.version) for r in answers[name]] == [(r.label, r.version) for r in alone[name]]
        for got, expected in zip(answers[name], alone[name]):
            assert got.probabilities == pytest.approx(expected.probabilities, abs=1e-5)


def test_answers_abstain_below_the_threshold_for_the_tasks_target_or_the_requests(trained, session):
    pairs = [(user, text) for text in UNSEEN for user in ("john", "jane")]
    by_target = {target: _ask(session, trained, pairs, target_accuracy=target) for target in (0.5, 0.99, 1.0)}
    for results in by_target.values():
        for result in results:
            assert result.threshold is not None  # every version here held validation rows out
            assert result.abstain == (max(result.probabilities.values()) < result.threshold)
    # A higher target never lowers a threshold.
    for low, high in zip(by_target[0.5], by_target[1.0]):
        assert low.threshold <= high.threshold and (high.abstain or not low.abstain)
    # Without an override, the task's own target applies.
    task = get_task(session=session, name="notes")
    saved = task.target_accuracy
    try:
        task.target_accuracy = 0.99
        default = _ask(session, trained, pairs)
    finally:
        task.target_accuracy = saved
    assert [(r.threshold, r.abstain) for r in default] == [(r.threshold, r.abstain) for r in by_target[0.99]]
