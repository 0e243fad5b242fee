"""Requests per second per user key: a token bucket per user, in this process. A caller over its rate gets 429
with ``Retry-After`` (whole seconds until a request would pass)."""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Hashable

from fastapi import HTTPException, Request


class RateLimiter:
    """``rate`` requests per second on average, bursts of up to ``burst`` (default: twice the rate, at least 1)."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2 * rate)
        self.clock = clock
        self._buckets: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, when counted)
        self._lock = threading.Lock()

    def wait_seconds(self, key: Hashable) -> float:
        """Takes one request from ``key``'s bucket: 0 if it may go ahead, else how long until it could."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - then) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate

    def check(self, key: Hashable, who: str) -> None:
        wait = self.wait_seconds(key)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise HTTPException(429, detail=f"{who} is over the rate limit of {self.rate:g} requests per second "
                                            f"(bursts of {self.burst:g}); retry after {retry_after} s",
                                headers={"Retry-After": str(retry_after)})


def check_rate(request: Request, user_id: Hashable, name: str) -> None:
    """429 if user ``name`` is over the app's rate limit (none when LOCALIZE_RATE_LIMIT_PER_SECOND is unset)."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.check(user_id, f"user {name!r}")
