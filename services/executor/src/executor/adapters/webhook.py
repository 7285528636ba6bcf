"""The webhook action: sign the step's request, send it through the guarded client, judge the answer.

The request is built and the answer classified in ``domain.actions.webhook`` and
``domain.actions.http``; this adapter adds what needs the outside world: the tenant's signing
secret (derived from the operator's master key), the clock at the moment of sending (the
``webhook-timestamp`` receivers check for freshness) and the HTTP exchange itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import aiohttp
from automation_shared.egress import EgressPolicy, check_url

from executor.adapters.http import Unreachable, exchange
from executor.domain.actions import webhook
from executor.domain.actions.base import ActionCall, dry_run
from executor.domain.actions.http import HttpRequest, outcome_of_answer, outcome_of_transport_error, redact_url
from executor.domain.runs import StepOutcome


class WebhookAdapter:
    """Performs ``webhook`` steps."""

    def __init__(self, *, client: aiohttp.ClientSession, policy: EgressPolicy, master_key: bytes,
                 clock: Callable[[], datetime]) -> None:
        self._client = client
        self._policy = policy
        self._master_key = master_key
        self._clock = clock

    def _request(self, call: ActionCall) -> HttpRequest:
        secret = webhook.tenant_signing_secret(self._master_key, call.tenant_id)
        return webhook.build_webhook_request(call, secret=secret, sent_at=self._clock())

    def preview(self, call: ActionCall) -> StepOutcome:
        """Test mode: what would be sent, checked against the egress policy as far as text allows.

        Raises:
            EgressRefused, ActionRefused, TemplateError: as a live attempt would.
        """
        request = self._request(call)
        check_url(request.url, self._policy)
        return dry_run(webhook.preview(request))

    async def perform(self, call: ActionCall) -> StepOutcome:
        """Send the attempt once and classify what happened.

        Raises:
            EgressRefused, ActionRefused, TemplateError: the step cannot be sent (permanent).
        """
        request = self._request(call)
        extra = {"webhook_id": call.idempotency_key, "attempt": call.attempt, "url": redact_url(request.url)}
        try:
            answer = await exchange(self._client, request, self._policy)
        except Unreachable as exc:
            return outcome_of_transport_error(str(exc), duration_ms=exc.duration_ms, extra=extra)
        return outcome_of_answer(answer, extra)
