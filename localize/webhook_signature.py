"""Webhook signatures, for the sender and for receivers (``from localize.webhook_signature import verify``).

Each delivery carries ``X-Localize-Timestamp`` (Unix seconds at sending) and ``X-Localize-Signature``:
``sha256=`` + hex HMAC-SHA256 of ``"<timestamp>.<raw body>"`` under the webhook's secret. Signing the timestamp
with the body lets a receiver refuse a replayed delivery that is too old. Only the standard library is used.
"""
from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Localize-Signature"
TIMESTAMP_HEADER = "X-Localize-Timestamp"
EVENT_HEADER = "X-Localize-Event"
DELIVERY_HEADER = "X-Localize-Delivery"
SCHEME = "sha256="


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return SCHEME + hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str | None, body: bytes, signature: str | None, *, tolerance_seconds: float = 300,
           now: float | None = None) -> bool:
    """Whether a delivery is authentic: the signature matches (compared in constant time) and the timestamp is
    within ``tolerance_seconds`` of ``now``."""
    if not timestamp or not signature:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature)
