"""Webhooks: an admin subscribes a URL, with a secret, to a task's events; a background sender POSTs each event to
it, signed, retrying with backoff, and keeps a log of every delivery.

Nobody waits on a receiver. An event becomes one ``webhook_delivery`` row per subscribed webhook, and the sender
(a thread of the API process) works through the rows that are due:

    labels.uploaded     written by ``labels.upsert_labels``, in the upload's own transaction
    adapter.activated   written by ``adapters`` whenever a version becomes active (a job's new version in the
                        worker's transaction, or an activation / rollback), so the worker process emits too
    job.succeeded       found by the sender in the job table: a job can finish in a worker, in a Ray task or when
    job.failed          its worker dies, and the table is where all of them meet; only jobs that finished after
                        the webhook was registered count, and each job once (a unique key per webhook)

A delivery is a POST of the event as JSON with ``X-Localize-Event``, ``X-Localize-Delivery``,
``X-Localize-Timestamp`` and ``X-Localize-Signature`` (see :mod:`localize.webhook_signature`). A 2xx answer
delivers it; any other answer, or none within the timeout, is retried after ``backoff * 2**(attempts - 1)``
seconds (at most an hour) until ``webhook_max_attempts``, then it is failed. A sender claims a delivery by moving
its next attempt past the request's timeout in one guarded UPDATE, so two senders never send it at once, and one
that died mid-send leaves it to be retried.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import String, cast, delete, exists, func, literal, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from localize.db.models import (
    WEBHOOK_EVENTS,
    AdapterVersion,
    Job,
    JobState,
    Task,
    User,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryPublic,
    WebhookDeliveryState,
    WebhookPublic,
    aware,
    utcnow,
)
from localize.db.session import session_scope
from localize.errors import ConflictError, NotFoundError, ValidationError
from localize.settings import Settings
from localize.webhook_signature import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

logger = logging.getLogger(__name__)

JOB_EVENTS = {"job.succeeded": JobState.SUCCEEDED, "job.failed": JobState.FAILED}
MAX_BACKOFF_SECONDS = 3600.0
# How far behind the last scan the next one starts: a job's finished_at is set before its transaction commits.
JOB_SCAN_MARGIN = timedelta(minutes=5)
JOB_SCAN_STEP = timedelta(minutes=1)
_ERROR_CHARS = 500


# -- subscriptions ------------------------------------------------------------------------------------------------
def check_url(url: str) -> str:
    parts = urlsplit(url.strip()) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"webhook URL {url!r} must be an http:// or https:// URL with a host")
    return url.strip()


def check_events(events: list[str] | None) -> list[str]:
    if events is None:
        return list(WEBHOOK_EVENTS)
    unknown = [event for event in events if event not in WEBHOOK_EVENTS]
    if unknown:
        raise ValidationError(f"unknown webhook event(s) {unknown}; the events are {list(WEBHOOK_EVENTS)}")
    if not events:
        raise ValidationError(f"a webhook needs at least one event of {list(WEBHOOK_EVENTS)}")
    return [event for event in WEBHOOK_EVENTS if event in events]


def create_webhook(*, session: Session, task: Task, url: str, secret: str, events: list[str] | None = None) -> Webhook:
    """Subscribes ``url`` to ``events`` (default: all) of ``task``; deliveries are signed with ``secret``."""
    if not isinstance(secret, str) or not 16 <= len(secret) <= 256:
        raise ValidationError("a webhook secret must be 16 to 256 characters long (a long random string)")
    now = utcnow()
    webhook = Webhook(task_id=task.id, url=check_url(url), secret=secret, events=check_events(events),
                      created_at=now, job_events_from=now)
    session.add(webhook)
    session.commit()
    session.refresh(webhook)
    return webhook


def list_webhooks(*, session: Session, task: Task) -> list[Webhook]:
    return list(session.exec(select(Webhook).where(Webhook.task_id == task.id).order_by(Webhook.id)))


def get_webhook(*, session: Session, task: Task, webhook_id: int) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None or webhook.task_id != task.id:
        raise NotFoundError(f"webhook {webhook_id} of task {task.name!r} does not exist")
    return webhook


def delete_webhook(*, session: Session, task: Task, webhook_id: int) -> None:
    """Removes the subscription and its delivery log; deliveries not yet sent are dropped."""
    webhook = get_webhook(session=session, task=task, webhook_id=webhook_id)
    session.exec(delete(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id))
    session.delete(webhook)
    session.commit()


def webhook_public(webhook: Webhook, task: Task) -> WebhookPublic:
    return WebhookPublic(id=webhook.id, task=task.name, url=webhook.url, events=webhook.events,
                         created_at=aware(webhook.created_at))


def list_deliveries(*, session: Session, webhook: Webhook, state: str | None = None, offset: int = 0,
                    limit: int = 100) -> tuple[list[WebhookDelivery], int]:
    """A webhook's delivery log, newest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook.id)
    if state is not None:
        query = query.where(WebhookDelivery.state == state)
    count = session.exec(select(func.count()).select_from(query.subquery())).one()
    rows = session.exec(query.order_by(WebhookDelivery.id.desc()).offset(offset).limit(limit))
    return list(rows), count


def delivery_public(row: WebhookDelivery) -> WebhookDeliveryPublic:
    return WebhookDeliveryPublic(
        id=row.id, webhook_id=row.webhook_id, event=row.event, state=row.state, attempts=row.attempts,
        last_status=row.last_status, last_error=row.last_error, payload=row.payload, created_at=aware(row.created_at),
        next_attempt_at=aware(row.next_attempt_at) if row.state == WebhookDeliveryState.PENDING else None,
        delivered_at=aware(row.delivered_at))


# -- events -------------------------------------------------------------------------------------------------------
def _scalars(values: dict[str, Any] | None) -> dict[str, Any]:
    """The plain figures of a metrics record (not the per-row records some versions keep)."""
    return {key: value for key, value in (values or {}).items() if isinstance(value, (int, float, str, bool))}


def _enqueue(session: Session, webhook: Webhook, task: Task, event: str, data: dict[str, Any], *,
             event_id: str, key: str) -> None:
    payload = {"id": event_id, "event": event, "task": task.name, "created_at": utcnow().isoformat(), "data": data}
    session.add(WebhookDelivery(webhook_id=webhook.id, event=event, event_key=key, payload=payload))


def emit(*, session: Session, task: Task, event: str, data: dict[str, Any]) -> int:
    """Adds a delivery of ``event`` for every webhook of ``task`` that subscribed to it, in the caller's
    transaction (the caller commits: the event is sent only if its change is stored). Returns how many."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    webhooks = [hook for hook in session.exec(select(Webhook).where(Webhook.task_id == task.id)) if event in hook.events]
    event_id = uuid.uuid4().hex  # the same for every webhook: receivers can tell a repeat from a new event
    for webhook in webhooks:
        _enqueue(session, webhook, task, event, data, event_id=event_id, key=f"{event}-{event_id}")
    return len(webhooks)


def labels_uploaded(*, session: Session, task: Task, users: list[str], accepted: int, created: int, updated: int,
                    unchanged: int, errors: int) -> int:
    return emit(session=session, task=task, event="labels.uploaded",
                data={"users": users, "accepted": accepted, "created": created, "updated": updated,
                      "unchanged": unchanged, "errors": errors})


def adapter_activated(*, session: Session, row: AdapterVersion) -> int:
    task = session.get(Task, row.task_id)
    user = session.get(User, row.user_id) if row.user_id is not None else None
    return emit(session=session, task=task, event="adapter.activated",
                data={"user": None if user is None else user.name, "version": row.version, "method": row.method,
                      "metrics": _scalars(row.metrics)})


def enqueue_job_events(*, session: Session, now: datetime | None = None) -> int:
    """Adds a delivery for each job that finished (succeeded or failed) since its webhook was registered and has
    none yet; commits. Returns how many were added."""
    now = now or utcnow()
    added = 0
    for webhook in list(session.exec(select(Webhook))):
        states = {state: event for event, state in JOB_EVENTS.items() if event in webhook.events}
        if not states:
            continue
        key = literal("job-") + cast(Job.id, String)
        already = exists().where(WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.event_key == key)
        jobs = list(session.exec(
            select(Job).where(Job.task_id == webhook.task_id, Job.state.in_(list(states)),
                              Job.finished_at >= webhook.job_events_from, ~already).order_by(Job.id)))
        task = session.get(Task, webhook.task_id)
        for job in jobs:
            _enqueue(session, webhook, task, states[job.state], {"job": _job_data(session, job)},
                     event_id=uuid.uuid4().hex, key=f"job-{job.id}")
        scanned_from = max(aware(webhook.created_at), now - JOB_SCAN_MARGIN)
        if scanned_from - aware(webhook.job_events_from) >= JOB_SCAN_STEP:  # a write a minute, not every round
            session.exec(update(Webhook).where(Webhook.id == webhook.id).values(job_events_from=scanned_from))
        elif not jobs:
            continue
        try:
            session.commit()
        except IntegrityError:  # another sender enqueued the same jobs first
            session.rollback()
            continue
        added += len(jobs)
    return added


def _job_data(session: Session, job: Job) -> dict[str, Any]:
    user = session.get(User, job.user_id) if job.user_id is not None else None
    version = session.get(AdapterVersion, job.adapter_version_id) if job.adapter_version_id else None
    return {"id": job.id, "user": None if user is None else user.name, "state": job.state, "error": job.error,
            "adapter_version": None if version is None else version.version, "activated": job.activated,
            "attempts": job.attempts, "metrics": _scalars(job.metrics),
            "finished_at": None if job.finished_at is None else aware(job.finished_at).isoformat()}


def get_delivery(*, session: Session, webhook: Webhook, delivery_id: int) -> WebhookDelivery:
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.webhook_id != webhook.id:
        raise NotFoundError(f"delivery {delivery_id} of webhook {webhook.id} does not exist")
    return row


def redeliver(*, session: Session, webhook: Webhook, delivery_id: int) -> WebhookDelivery:
    """Sends a delivery again (a failed one after its receiver is fixed, or a delivered one the receiver lost): it
    is pending at once, with a fresh series of attempts."""
    row = get_delivery(session=session, webhook=webhook, delivery_id=delivery_id)
    if row.state == WebhookDeliveryState.PENDING:
        raise ConflictError(f"delivery {delivery_id} is still pending (attempt {row.attempts + 1} is due at "
                            f"{aware(row.next_attempt_at).isoformat()}); it is sent without being asked")
    row.state, row.attempts, row.next_attempt_at = WebhookDeliveryState.PENDING, 0, utcnow()
    row.delivered_at = None
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


# -- sending ------------------------------------------------------------------------------------------------------
def backoff_seconds(attempts: int, base: float) -> float:
    """The pause after the ``attempts``-th failed attempt."""
    return min(MAX_BACKOFF_SECONDS, base * 2 ** (attempts - 1))


def claim_due(*, session: Session, lease_seconds: float, limit: int = 50, now: datetime | None = None) -> list[int]:
    """Claims up to ``limit`` due deliveries for this sender (their next attempt moves ``lease_seconds`` ahead);
    commits and returns their ids."""
    now = now or utcnow()
    due = list(session.exec(
        select(WebhookDelivery.id).where(WebhookDelivery.state == WebhookDeliveryState.PENDING,
                                         WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)))
    claimed = []
    lease = now + timedelta(seconds=lease_seconds)
    for delivery_id in due:
        moved = session.exec(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                          WebhookDelivery.state == WebhookDeliveryState.PENDING,
                                          WebhookDelivery.next_attempt_at <= now)
            .values(next_attempt_at=lease)).rowcount
        if moved:
            claimed.append(delivery_id)
    session.commit()
    return claimed


def send(*, http: httpx.Client, url: str, secret: str, event: str, delivery_id: int, payload: dict[str, Any],
         timeout: float) -> tuple[int | None, str | None]:
    """One attempt: ``(status, None)`` when a 2xx answered, else ``(status or None, why it failed)``."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode("utf-8")
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": "localize-webhooks", EVENT_HEADER: event,
               DELIVERY_HEADER: str(delivery_id), TIMESTAMP_HEADER: str(timestamp),
               SIGNATURE_HEADER: sign(secret, timestamp, body)}
    try:
        response = http.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"[:_ERROR_CHARS]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text.strip()}"[:_ERROR_CHARS]


def record_attempt(*, session: Session, delivery_id: int, status: int | None, error: str | None,
                   settings: Settings) -> WebhookDelivery:
    """Logs one attempt: delivered, retried later with backoff, or failed after the last attempt; commits."""
    row = session.get(WebhookDelivery, delivery_id)
    row.attempts += 1
    row.last_status, row.last_error = status, error
    now = utcnow()
    if error is None:
        row.state, row.delivered_at = WebhookDeliveryState.DELIVERED, now
    elif row.attempts >= settings.webhook_max_attempts:
        row.state = WebhookDeliveryState.FAILED
        logger.warning("webhook delivery %s (%s) failed after %s attempts: %s", row.id, row.event, row.attempts, error)
    else:
        row.next_attempt_at = now + timedelta(seconds=backoff_seconds(row.attempts, settings.webhook_backoff_seconds))
    session.add(row)
    session.commit()
    return row


def deliver_due(*, database: Engine, http: httpx.Client, settings: Settings) -> int:
    """One round of the sender: enqueues job events, then attempts every due delivery once. Returns how many
    were attempted."""
    with session_scope(database) as session:
        enqueue_job_events(session=session)
        claimed = claim_due(session=session, lease_seconds=settings.webhook_timeout_seconds + 30)
    for delivery_id in claimed:
        with session_scope(database) as session:
            row = session.get(WebhookDelivery, delivery_id)
            webhook = session.get(Webhook, row.webhook_id) if row is not None else None
            if webhook is None:  # deleted meanwhile
                continue
            target = {"url": webhook.url, "secret": webhook.secret, "event": row.event, "delivery_id": row.id,
                      "payload": row.payload}
        # No session is held while the receiver answers.
        status, error = send(http=http, timeout=settings.webhook_timeout_seconds, **target)
        with session_scope(database) as session:
            if session.get(WebhookDelivery, delivery_id) is not None:
                record_attempt(session=session, delivery_id=delivery_id, status=status, error=error, settings=settings)
    return len(claimed)


class WebhookSender:
    """The background sender: a daemon thread that runs :func:`deliver_due` every ``webhook_poll_seconds`` (at
    once again while deliveries keep coming due)."""

    def __init__(self, database: Engine, settings: Settings) -> None:
        self.database, self.settings = database, settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="webhook-sender", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.settings.webhook_timeout_seconds + 5)

    def _run(self) -> None:
        with httpx.Client(follow_redirects=False) as http:
            while not self._stop.is_set():
                try:
                    busy = deliver_due(database=self.database, http=http, settings=self.settings) > 0
                except Exception:  # noqa: BLE001  (a database hiccup must not stop the sender)
                    logger.exception("webhook sender round failed")
                    busy = False
                if not busy:
                    self._stop.wait(self.settings.webhook_poll_seconds)
