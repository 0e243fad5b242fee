"""A typed Python client of the localize HTTP API, synchronous (:class:`Client`) and asyncio
(:class:`AsyncClient`), with the same resource groups: ``tasks``, ``users``, ``labels``, ``jobs``, ``adapters``,
``predict`` (and ``fanout``) and ``webhooks``. Answers are the API's own response models
(``localize.api.schemas``); errors are the tree in :mod:`localize.client.errors`.

    from localize.client import Client

    with Client("http://127.0.0.1:8000", api_key="...") as client:   # or LOCALIZE_URL / LOCALIZE_API_KEY
        client.labels.upload("gold", "john", "john.csv")
        client.jobs.train_and_wait("gold", "john", on_progress=lambda job: print(job.progress))
        print(client.predict("gold", "john", ["gold is up 150%"])[0].label)

Importing it loads neither torch nor the server application.
"""
from __future__ import annotations

from localize.client._async import AsyncClient
from localize.client._sync import Client
from localize.client.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    JobFailedError,
    LabelFileError,
    LocalizeClientError,
    NoAdapterError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    ValidationError,
    WaitTimeoutError,
)

__all__ = [
    "APIConnectionError", "APIStatusError", "APITimeoutError", "AsyncClient", "AuthenticationError",
    "BadRequestError", "Client", "ConflictError", "InternalServerError", "JobFailedError", "LabelFileError",
    "LocalizeClientError", "NoAdapterError", "NotFoundError", "PayloadTooLargeError", "PermissionDeniedError",
    "RateLimitError", "ServiceUnavailableError", "ValidationError", "WaitTimeoutError",
]
