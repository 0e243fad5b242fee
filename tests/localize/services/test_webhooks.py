"""The webhook service's bookkeeping, on SQLite and PostgreSQL: job events are enqueued once per job and only for
jobs that finished after the webhook was registered; each scan reads only recent jobs; events are sent only with
the change they report (the caller's transaction); retry pauses double up to their cap."""
from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from localize.db.models import Job, JobState, Task, User, Webhook, WebhookDelivery, aware, utcnow
from localize.services import webhooks as webhook_service
from localize.services.labels import upsert_labels

from .support import label_rows

SECRET = "s" * 16


def _job(session: Session, task: Task, user: User, state: str, finished_minutes_ago: float) -> Job:
    job = Job(task_id=task.id, user_id=user.id, state=state,
              finished_at=utcnow() - timedelta(minutes=finished_minutes_ago))
    session.add(job)
    session.commit()
    return job


def test_job_events_are_enqueued_once_and_only_for_jobs_finished_after_registration(session: Session, task) -> None:
    user = User(name="john")
    session.add(user)
    session.commit()
    before = _job(session, task, user, JobState.SUCCEEDED, finished_minutes_ago=1)
    webhook = webhook_service.create_webhook(session=session, task=task, url="http://127.0.0.1:9/x", secret=SECRET,
                                             events=["job.succeeded", "job.failed"])
    succeeded = _job(session, task, user, JobState.SUCCEEDED, finished_minutes_ago=-0.01)
    failed = _job(session, task, user, JobState.FAILED, finished_minutes_ago=-0.02)
    _job(session, task, user, JobState.CANCELLED, finished_minutes_ago=-0.03)  # not an event

    assert webhook_service.enqueue_job_events(session=session) == 2
    assert webhook_service.enqueue_job_events(session=session) == 0  # once per job
    rows = session.exec(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
    assert [(row.event, row.event_key) for row in rows] == [("job.succeeded", f"job-{succeeded.id}"),
                                                            ("job.failed", f"job-{failed.id}")]
    assert rows[0].payload["data"]["job"]["user"] == "john" and rows[0].payload["task"] == "notes"
    assert before.id not in {row.payload["data"]["job"]["id"] for row in rows}

    # Ten minutes on, a scan starts five minutes back: jobs that finished earlier are no longer read at all.
    later = utcnow() + timedelta(minutes=10)
    webhook_service.enqueue_job_events(session=session, now=later)
    session.refresh(webhook)
    assert abs(aware(webhook.job_events_from) - (later - webhook_service.JOB_SCAN_MARGIN)) < timedelta(seconds=1)
    late = _job(session, task, user, JobState.FAILED, finished_minutes_ago=-7)  # within the margin: still found
    _job(session, task, user, JobState.FAILED, finished_minutes_ago=-4)  # before the window: never read again
    assert webhook_service.enqueue_job_events(session=session, now=later) == 1
    assert session.exec(select(WebhookDelivery).where(WebhookDelivery.event_key == f"job-{late.id}")).one()


def test_an_event_is_stored_only_with_its_change(session: Session, task) -> None:
    webhook_service.create_webhook(session=session, task=task, url="http://127.0.0.1:9/x", secret=SECRET,
                                   events=["labels.uploaded"])
    other = Task(name="other", labels=["personal", "work"])
    session.add(other)
    session.commit()
    upsert_labels(session=session, task=other, rows=label_rows("john", ["a text"], ["work"]))  # no webhook there
    assert session.exec(select(WebhookDelivery)).all() == []

    assert webhook_service.emit(session=session, task=task, event="labels.uploaded", data={}) == 1
    session.rollback()  # the change was not stored: neither is its event
    assert session.exec(select(WebhookDelivery)).all() == []
    upsert_labels(session=session, task=task, rows=label_rows("john", ["a text"], ["work"]))
    (row,) = session.exec(select(WebhookDelivery)).all()
    assert (row.event, row.payload["data"]["created"]) == ("labels.uploaded", 1)
    assert session.exec(select(Webhook)).one().events == ["labels.uploaded"]


def test_retry_pauses_double_up_to_an_hour() -> None:
    assert [webhook_service.backoff_seconds(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert webhook_service.backoff_seconds(30, 2.0) == 3600.0
