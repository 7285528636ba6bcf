"""The webhook action adapter: sends a :class:`WebhookRequest` with httpx and judges the answer.

One ``httpx.AsyncClient`` serves the whole process (connection pooling); the run driver
creates it when it starts, sized to its pool of concurrent steps, and closes it when it
stops. Every expected failure (timeouts, connection errors, error statuses) comes back as a
failed :class:`SentEffect`, never as an exception, so the run records it like any other outcome.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx

from executor.domain.runs import StepOutcome
from executor.domain.webhooks import WebhookRequest, outcome_of_response, outcome_of_transport_error

EXCERPT_CHARS = 500


@dataclass(frozen=True)
class SentEffect:
    """A side effect that was performed, as recorded under its idempotency key."""

    outcome: StepOutcome
    response_status: int | None = None
    response_excerpt: str | None = None


def new_client(max_connections: int = 100) -> httpx.AsyncClient:
    """The process's HTTP client for webhooks (no redirects: a 3xx is the receiver's answer).

    ``max_connections`` should be at least the number of steps performed at once, so a step
    never queues for a connection behind other tenants' slow requests; idle connections are
    all kept alive (httpx keeps 20 by default), so a busy pool does not reconnect per request.
    """
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(follow_redirects=False, limits=limits)


async def send_webhook(client: httpx.AsyncClient, request: WebhookRequest) -> SentEffect:
    """Send ``request`` once and classify what happened.

    ``timeout_seconds`` bounds the whole exchange, not only each phase as httpx's timeout does:
    an endpoint that trickles its answer must not outlast the lease the step was claimed with.
    """
    started = time.perf_counter()

    def elapsed_ms() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        async with asyncio.timeout(request.timeout_seconds):
            response = await client.request(
                request.method,
                request.url,
                content=json.dumps(request.body, default=str).encode(),
                headers=request.headers,
                timeout=request.timeout_seconds,
            )
            text = response.text
    except (httpx.TimeoutException, TimeoutError) as exc:
        error = f"timeout after {request.timeout_seconds}s ({type(exc).__name__})"
        return SentEffect(outcome_of_transport_error(error, duration_ms=elapsed_ms()))
    except httpx.TransportError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return SentEffect(outcome_of_transport_error(error, duration_ms=elapsed_ms()))
    return SentEffect(
        outcome_of_response(response.status_code, duration_ms=elapsed_ms()),
        response_status=response.status_code,
        response_excerpt=text[:EXCERPT_CHARS],
    )
