"""The ``send_notification`` action: email over SMTP; Slack, SMS and push over the guarded HTTP client.

What to send and to whom is decided in ``domain.actions.notification``; this adapter makes
the deliveries, concurrently and within one total deadline for the step, and reports each. A
delivery an earlier attempt made (``ActionCall.delivered``) is not made again. The step
completes when every delivery did; otherwise it fails, listing what was delivered
(``result["delivered"]``), and is worth retrying only when every failure was transient.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from automation_shared.egress import EgressPolicy, EgressRefused, check_url

from executor.adapters.http import Unreachable, exchange
from executor.adapters.smtp import SmtpFailure, SmtpServer, send_email
from executor.domain.actions import notification
from executor.domain.actions.base import ActionCall, ActionRefused, clean_text, completed, dry_run, failed
from executor.domain.actions.http import answer_result, is_retryable_status
from executor.domain.actions.notification import Delivery, Notification, ProviderUrls
from executor.domain.runs import StepOutcome


@dataclass
class _Report:
    """How one delivery went."""

    entry: dict[str, Any]
    ok: bool
    retryable: bool = False


class NotificationAdapter:
    """Performs ``send_notification`` steps."""

    def __init__(self, *, client: aiohttp.ClientSession, policy: EgressPolicy, smtp: SmtpServer | None,
                 sender: str, providers: ProviderUrls, timeout_seconds: float) -> None:
        self._client = client
        self._policy = policy
        self._smtp = smtp
        self._sender = sender
        self._providers = providers
        self._timeout = timeout_seconds

    def _plan(self, call: ActionCall) -> Notification:
        plan = notification.plan_notification(call, providers=self._providers, timeout_seconds=self._timeout)
        for delivery in plan.deliveries:
            if delivery.channel == "email" and self._smtp is None:
                raise ActionRefused("no SMTP server is configured for email (AUTOMATION_SMTP_HOST)")
            if delivery.request is not None:
                check_url(delivery.request.url, self._policy)
        return plan

    def preview(self, call: ActionCall) -> StepOutcome:
        """Test mode: every delivery that would be made, nothing sent.

        Raises:
            ActionRefused, EgressRefused, TemplateError: as a live attempt would.
        """
        return dry_run(notification.preview(self._plan(call), sender=self._sender))

    async def perform(self, call: ActionCall) -> StepOutcome:
        """Make every delivery not yet made, then judge the step by all of them.

        Raises:
            ActionRefused, EgressRefused, TemplateError: the notification cannot be sent (permanent).
        """
        plan = self._plan(call)
        started = time.perf_counter()
        pending = [delivery for delivery in plan.deliveries if delivery.key not in call.delivered]
        earlier = [delivery.key for delivery in plan.deliveries if delivery.key in call.delivered]
        reports: dict[str, _Report] = {}
        try:
            async with asyncio.timeout(self._timeout):
                await asyncio.gather(*(self._deliver(call, plan, delivery, reports) for delivery in pending))
        except TimeoutError:
            for delivery in pending:
                reports.setdefault(delivery.key, _Report(
                    {"key": delivery.key, "channel": delivery.channel, "status": "failed",
                     "error": f"not delivered within the step's {self._timeout:g} s deadline"},
                    ok=False, retryable=True))
        duration_ms = int((time.perf_counter() - started) * 1000)
        entries = [reports[delivery.key].entry for delivery in pending]
        delivered = earlier + [delivery.key for delivery in pending if reports[delivery.key].ok]
        result = {"deliveries": entries, "delivered": delivered}
        failures = [reports[delivery.key] for delivery in pending if not reports[delivery.key].ok]
        if not failures:
            return completed(result, duration_ms=duration_ms)
        error = "; ".join(f"{report.entry['key']}: {report.entry.get('error', 'failed')}" for report in failures)
        return failed(f"{len(failures)} of {len(plan.deliveries)} deliveries failed: {error}",
                      retryable=all(report.retryable for report in failures), duration_ms=duration_ms,
                      result=result)

    async def _deliver(self, call: ActionCall, plan: Notification, delivery: Delivery,
                       reports: dict[str, _Report]) -> None:
        entry: dict[str, Any] = {"key": delivery.key, "channel": delivery.channel, "to": list(delivery.to)}
        try:
            if delivery.request is None:
                reports[delivery.key] = await self._email(call, plan, delivery, entry)
                return
            answer = await exchange(self._client, delivery.request, self._policy)
        except Unreachable as exc:
            reports[delivery.key] = _failure(entry, str(exc), retryable=True)
            return
        except (EgressRefused, ActionRefused) as exc:
            reports[delivery.key] = _failure(entry, str(exc), retryable=False)
            return
        entry.update(answer_result(answer))
        if 200 <= answer.status < 300:
            reports[delivery.key] = _Report({**entry, "status": "delivered"}, ok=True)
        else:
            reports[delivery.key] = _failure(entry, f"HTTP {answer.status}",
                                             retryable=is_retryable_status(answer.status))

    async def _email(self, call: ActionCall, plan: Notification, delivery: Delivery,
                     entry: dict[str, Any]) -> _Report:
        assert self._smtp is not None  # _plan refuses email without a server
        message = notification.email_message(call, plan, sender=self._sender, to=delivery.to)
        try:
            refused = await send_email(self._smtp, message, sender=self._sender, recipients=delivery.to)
        except SmtpFailure as exc:
            return _failure({**entry, "smtp_code": exc.code}, str(exc), retryable=exc.retryable)
        return _Report({**entry, "status": "delivered", "message_id": message["Message-ID"],
                        **({"refused": refused} if refused else {})}, ok=True)


def _failure(entry: dict[str, Any], error: str, *, retryable: bool) -> _Report:
    return _Report({**entry, "status": "failed", "error": clean_text(error, 500)}, ok=False, retryable=retryable)
