"""What the synchronous and the asynchronous client share: configuration, the retry policy, and operations
written once as generators that yield the HTTP calls (and pauses) they need; each client only runs them."""
from __future__ import annotations

import os
import random
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx

from localize.client.errors import error_from_response

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "LOCALIZE_URL"
KEY_VARIABLE = "LOCALIZE_API_KEY"
# Answers that say "not now" rather than "no": nothing was done, so the same request may be sent again.
RETRYABLE_STATUSES = frozenset({429, 503})
SAFE_METHODS = frozenset({"GET", "HEAD"})  # reading twice changes nothing


@dataclass(frozen=True)
class Call:
    """One HTTP request an operation needs; the client sends it (with retries) and sends back the decoded JSON
    body, or throws the typed error into the operation."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None


@dataclass(frozen=True)
class Sleep:
    """A pause an operation needs (between polls); the client sleeps its own way."""

    seconds: float


Operation = Generator["Call | Sleep", Any, T]


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    api_key: str | None
    timeout: httpx.Timeout
    max_retries: int = 2
    backoff_seconds: float = 0.5  # the first retry's pause; each later one doubles it
    max_backoff_seconds: float = 8.0
    max_retry_after_seconds: float = 60.0  # a longer Retry-After is cut to this
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def resolve(cls, base_url: str | None, api_key: str | None, timeout: float | httpx.Timeout | None,
                max_retries: int, **kw: Any) -> ClientConfig:
        """Arguments first, then ``LOCALIZE_URL`` / ``LOCALIZE_API_KEY``, then the local default address."""
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        url = base_url or os.environ.get(URL_VARIABLE) or DEFAULT_URL
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base URL {url!r} must start with http:// or https://")
        key = api_key if api_key is not None else os.environ.get(KEY_VARIABLE) or None
        headers = {"Accept": "application/json, application/problem+json", "User-Agent": "localize-client"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return cls(base_url=url.rstrip("/"), api_key=key,
                   timeout=timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout),
                   max_retries=max_retries, headers=headers, **kw)

    def backoff(self, attempt: int) -> float:
        """The pause before retry ``attempt + 1``: exponential with jitter, so many clients do not retry in step."""
        pause = min(self.max_backoff_seconds, self.backoff_seconds * 2**attempt)
        return pause * (0.75 + 0.5 * random.random())

    def retry_delay(self, attempt: int, response: httpx.Response) -> float | None:
        """How long to wait before sending the request again, or ``None`` when its answer is final."""
        if response.status_code not in RETRYABLE_STATUSES or attempt >= self.max_retries:
            return None
        after = retry_after(response)
        return min(after, self.max_retry_after_seconds) if after is not None else self.backoff(attempt)

    def transport_retry_delay(self, attempt: int, error: httpx.TransportError, method: str) -> float | None:
        """A request that never reached the server (refused or timed-out connection) may be sent again, and so may
        a read (GET) that failed on the way; any other request may have been acted on, so it is not repeated."""
        never_sent = isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout))
        if attempt >= self.max_retries or not (never_sent or method in SAFE_METHODS):
            return None
        return self.backoff(attempt)


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (it may be a number of seconds or an HTTP date), or ``None``."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def decode(response: httpx.Response) -> Any:
    """The JSON body of a successful answer; an error answer raises its typed error."""
    if response.status_code >= 400:
        raise error_from_response(response)
    if not response.content:
        return None
    return response.json()


def request_arguments(call: Call) -> dict[str, Any]:
    arguments: dict[str, Any] = {"method": call.method, "url": call.path}
    if call.json is not None:
        arguments["json"] = call.json
    if call.params:
        arguments["params"] = {key: value for key, value in call.params.items() if value is not None}
    return arguments
