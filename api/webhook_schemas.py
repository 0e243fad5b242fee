"""Request and response models of the webhook routes, with examples for the OpenAPI document (the table families
live in ``localize.db.models``). Light to import: the Python client reads them too."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, ConfigDict

from localize.db import models
from localize.db.models import WEBHOOK_EVENTS, aware

UtcDatetime = Annotated[datetime, AfterValidator(aware)]
OptionalUtcDatetime = Annotated[datetime | None, AfterValidator(aware)]

NOW = "2025-01-15T09:30:00Z"
_WEBHOOK = {"id": 1, "task": "gold-sentiment", "url": "https://hooks.example.com/localize",
            "events": list(WEBHOOK_EVENTS), "created_at": NOW}
_DELIVERY = {
    "id": 12, "webhook_id": 1, "event": "job.succeeded", "state": "delivered", "attempts": 2, "last_status": 200,
    "last_error": None, "created_at": NOW, "next_attempt_at": None, "delivered_at": NOW,
    "payload": {"id": "5f0c5d8f2b4e4a4c9d6f1e2a3b4c5d6e", "event": "job.succeeded", "task": "gold-sentiment",
                "created_at": NOW, "data": {"job": {"id": 3, "user": "john", "state": "succeeded", "error": None,
                                                    "adapter_version": 2, "activated": True, "attempts": 1,
                                                    "metrics": {"val_macro_f1": 0.92}, "finished_at": NOW}}},
}


def _examples(*values: dict) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": list(values)})


class WebhookCreate(models.WebhookCreate):
    model_config = _examples({"url": "https://hooks.example.com/localize", "secret": "whsec_3q2Vd0fJ0m3pQx6J9yXc",
                              "events": ["job.succeeded", "job.failed"]})


class WebhookPublic(models.WebhookPublic):
    model_config = _examples(_WEBHOOK)

    created_at: UtcDatetime


class WebhooksPublic(models.WebhooksPublic):
    model_config = _examples({"data": [_WEBHOOK], "count": 1})

    data: list[WebhookPublic]


class WebhookDeliveryPublic(models.WebhookDeliveryPublic):
    model_config = _examples(_DELIVERY)

    created_at: UtcDatetime
    next_attempt_at: OptionalUtcDatetime
    delivered_at: OptionalUtcDatetime


class WebhookDeliveriesPublic(models.WebhookDeliveriesPublic):
    model_config = _examples({"data": [_DELIVERY], "count": 1})

    data: list[WebhookDeliveryPublic]
