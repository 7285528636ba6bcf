"""The webhook action adapter: sends a :class:`WebhookRequest` with httpx and judges the answer.

One ``httpx.AsyncClient`` serves the whole process (connection pooling); the run driver
creates it when it starts and closes it when it stops. Every expected failure (timeouts,
connection errors, error statuses) comes back as a failed :class:`SentEffect`, never as an
exception, so the run records it like any other outcome.
"""

from __future__ import annotations

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


def new_client() -> httpx.AsyncClient:
    """The process's HTTP client for webhooks (no redirects: a 3xx is the receiver's answer)."""
    return httpx.AsyncClient(follow_redirects=False, limits=httpx.Limits(max_connections=100))


async def send_webhook(client: httpx.AsyncClient, request: WebhookRequest) -> SentEffect:
    """Send ``request`` once and classify what happened."""
    started = time.perf_counter()

    def elapsed_ms() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        response = await client.request(
            request.method,
            request.url,
            content=json.dumps(request.body, default=str).encode(),
            headers=request.headers,
            timeout=request.timeout_seconds,
        )
    except httpx.TimeoutException as exc:
        error = f"timeout after {request.timeout_seconds}s ({type(exc).__name__})"
        return SentEffect(outcome_of_transport_error(error, duration_ms=elapsed_ms()))
    except httpx.TransportError as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return SentEffect(outcome_of_transport_error(error, duration_ms=elapsed_ms()))
    return SentEffect(
        outcome_of_response(response.status_code, duration_ms=elapsed_ms()),
        response_status=response.status_code,
        response_excerpt=response.text[:EXCERPT_CHARS],
    )
