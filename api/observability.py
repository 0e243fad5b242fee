"""Request metrics and traces (a plain ASGI middleware: no per-request task or thread), and ``GET /metrics``."""
from __future__ import annotations

from time import perf_counter

from fastapi import APIRouter, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from localize import metrics, tracing
from localize.api.deps import AdminOnly
from localize.api.errors import problem_responses

UNMATCHED = "unmatched"  # the route label of a request no route matched: never its raw path (unbounded labels)


class ObservabilityMiddleware:
    """Counts and times every HTTP request by route template, method and status class, and, while tracing is on,
    wraps it in a server span."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = perf_counter()
        status = 500
        handle = tracing.request_span(scope["method"], scope["path"], scope["headers"]) if tracing.enabled() else None

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            metrics.observe_request(template, scope["method"], status, perf_counter() - began)
            tracing.end_request_span(handle, template, status)


router = APIRouter(tags=["health"])


EXAMPLE = """\
# HELP localize_predictions_total Texts classified, by task and by whose adapter answered (user or prior).
# TYPE localize_predictions_total counter
localize_predictions_total{source="user",task="gold-sentiment"} 1234.0
"""


@router.get("/metrics", dependencies=[AdminOnly], response_class=Response,
            responses={**problem_responses(401, 403),
                       200: {"description": "Prometheus text format.",
                             "content": {"text/plain": {"example": EXAMPLE}}}})
def prometheus_metrics(request: Request) -> Response:
    """Prometheus metrics of this server and of the training queue (admin key; or scrape the metrics port)."""
    body = metrics.render(request.app.state.runtime.database)
    return Response(body, media_type=metrics.CONTENT_TYPE)
