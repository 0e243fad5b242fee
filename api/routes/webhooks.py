"""Webhooks (admin): subscribe a URL to a task's events, list and remove subscriptions, read the delivery log."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, status

from localize.api.deps import AdminOnly, JsonBody, SessionDep, TaskDep
from localize.api.errors import problem_responses
from localize.api.schemas import DeletedPublic
from localize.api.webhook_schemas import (
    WebhookCreate,
    WebhookDeliveriesPublic,
    WebhookDeliveryPublic,
    WebhookPublic,
    WebhooksPublic,
)
from localize.services import webhooks as webhook_service

router = APIRouter(prefix="/tasks/{task}/webhooks", tags=["webhooks"], dependencies=[AdminOnly],
                   responses=problem_responses(401, 403, 404, 422))

WebhookId = Annotated[int, Path(description="The webhook's id.", examples=[1])]


@router.post("", response_model=WebhookPublic, status_code=status.HTTP_201_CREATED, responses=problem_responses(400),
             dependencies=[JsonBody])
def create_webhook(task: TaskDep, body: WebhookCreate, session: SessionDep) -> WebhookPublic:
    """Subscribe a URL to the task's events; each delivery is signed with the secret (HMAC-SHA256)."""
    webhook = webhook_service.create_webhook(session=session, task=task, url=body.url, secret=body.secret,
                                             events=body.events)
    return WebhookPublic.model_validate(webhook_service.webhook_public(webhook, task))


@router.get("", response_model=WebhooksPublic)
def list_webhooks(task: TaskDep, session: SessionDep) -> WebhooksPublic:
    """The task's webhooks (their secrets are never shown)."""
    rows = webhook_service.list_webhooks(session=session, task=task)
    return WebhooksPublic(data=[WebhookPublic.model_validate(webhook_service.webhook_public(row, task))
                                for row in rows], count=len(rows))


@router.get("/{webhook_id}", response_model=WebhookPublic)
def get_webhook(task: TaskDep, webhook_id: WebhookId, session: SessionDep) -> WebhookPublic:
    """One webhook."""
    webhook = webhook_service.get_webhook(session=session, task=task, webhook_id=webhook_id)
    return WebhookPublic.model_validate(webhook_service.webhook_public(webhook, task))


@router.delete("/{webhook_id}", response_model=DeletedPublic)
def delete_webhook(task: TaskDep, webhook_id: WebhookId, session: SessionDep) -> DeletedPublic:
    """Remove a webhook with its delivery log; deliveries not yet sent are dropped."""
    webhook_service.delete_webhook(session=session, task=task, webhook_id=webhook_id)
    return DeletedPublic(deleted=1)


@router.get("/{webhook_id}/deliveries", response_model=WebhookDeliveriesPublic)
def list_deliveries(
    task: TaskDep,
    webhook_id: WebhookId,
    session: SessionDep,
    state: Annotated[Literal["pending", "delivered", "failed"] | None, Query(description="Only this state.")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> WebhookDeliveriesPublic:
    """A webhook's delivery log, newest first: each event's state, attempts, last answer and body."""
    webhook = webhook_service.get_webhook(session=session, task=task, webhook_id=webhook_id)
    rows, count = webhook_service.list_deliveries(session=session, webhook=webhook, state=state, offset=offset,
                                                  limit=limit)
    return WebhookDeliveriesPublic(data=[WebhookDeliveryPublic.model_validate(webhook_service.delivery_public(row))
                                         for row in rows], count=count)


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver", response_model=WebhookDeliveryPublic,
             responses=problem_responses(409))
def redeliver(task: TaskDep, webhook_id: WebhookId,
              delivery_id: Annotated[int, Path(description="The delivery's id.", examples=[12])],
              session: SessionDep) -> WebhookDeliveryPublic:
    """Send a failed (or delivered) delivery again, with a fresh series of attempts; a pending one is a conflict."""
    webhook = webhook_service.get_webhook(session=session, task=task, webhook_id=webhook_id)
    row = webhook_service.redeliver(session=session, webhook=webhook, delivery_id=delivery_id)
    return WebhookDeliveryPublic.model_validate(webhook_service.delivery_public(row))
