"""What every action adapter is handed and hands back. Pure.

The run driver turns one attempt of one action step into an :class:`ActionCall` and passes it
to the registry (``executor.actions.Actions.perform``), which answers with a
:class:`~executor.domain.runs.StepOutcome`. Failures an adapter can name — a refused
destination, a bad template, a header the platform owns — are typed exceptions deriving from
``ValueError`` that the registry records as non-retryable failures; transient failures come
back as outcomes with ``retryable=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from automation_shared.contracts.events import StepStatus
from automation_shared.contracts.rules import ActionBase

from executor.domain.runs import PendingStep, RunState, StepOutcome

ERROR_CHARS: Final = 2000
"""Longest error text recorded for a step (events, the runs API, logs)."""

REDACTED: Final = "[redacted]"


@dataclass(frozen=True)
class ActionCall:
    """One attempt of one action step, as the driver hands it to the registry."""

    run_id: str
    tenant_id: str
    automation_id: str
    automation_version: int
    step_id: str
    attempt: int
    """1-based."""
    idempotency_key: str
    """``f"{run_id}:{step_id}"``: the same for every attempt of the step, so receivers can drop repeats."""
    step: ActionBase
    """The typed step model of the pinned rule version; templates not rendered yet."""
    context: Mapping[str, Any]
    """The trigger snapshot plus ``{"steps": {step_id: result}}`` of earlier steps."""
    people: Mapping[str, tuple[str, ...]]
    """``{"owner": (...), "collaborators": (...), "approvers": (...)}`` from the rule."""
    test_mode: bool
    now: datetime
    delivered: frozenset[str] = field(default_factory=frozenset)
    """Deliveries an earlier attempt of this step already made (its failed result's ``delivered``
    list), skipped on this attempt so a notification retried for one channel does not repeat the
    others. Optional: without it a retry sends every delivery again."""
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The tenant's stored credentials this step's templates name (``{{ credentials.NAME }}``),
    loaded by the driver for this attempt only (placeholders in test mode); never part of the
    run's state, and every value is redacted from the outcome
    (``domain.actions.credentials``). Not in ``repr``: a logged call must not carry them."""


def action_call(state: RunState, pending: PendingStep, *, now: datetime) -> ActionCall:
    """The attempt the driver hands to the registry for ``pending``: the run's identity, its
    context (snapshot plus earlier steps' results), the rule's people, and what an earlier failed
    attempt of this step delivered already (kept in the step's result), so it is not repeated."""
    earlier = state.results.get(pending.step_id) or {}
    return ActionCall(
        run_id=state.run_id, tenant_id=state.tenant_id, automation_id=state.automation_id,
        automation_version=state.automation_version, step_id=pending.step_id, attempt=pending.attempt,
        idempotency_key=pending.idempotency_key, step=pending.step, context=state.view(),
        people={"owner": (state.owner,) if state.owner else (), "collaborators": state.collaborators,
                "approvers": ()},
        test_mode=state.test_mode, now=now,
        delivered=frozenset(str(key) for key in earlier.get("delivered") or ()))


class ActionRefused(ValueError):
    """The step cannot be performed as configured (never worth retrying); the message says why."""


class MissingCredential(ActionRefused):
    """A step names a stored credential (``{{ credentials.NAME }}``) its tenant has not stored:
    not worth retrying until an admin stores it (``domain.actions.credentials``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"credential {name!r} is not defined for this tenant (an admin stores it with "
                         f"PUT /api/v1/credentials/{name})")
        self.name = name


class UnreadableCredential(ActionRefused):
    """A stored credential no key of ``AUTOMATION_CREDENTIALS_KEY`` decrypts, or whose sealed
    tenant and name are not the row's (copied from elsewhere): not worth retrying until an
    operator restores the key or an admin stores the value again. Never carries the value."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"credential {name!r} could not be decrypted ({reason}): an admin stores it again with "
                         f"PUT /api/v1/credentials/{name}, or the operator restores the key it was stored under "
                         "to AUTOMATION_CREDENTIALS_KEY")
        self.name = name
        self.reason = reason


def completed(result: Mapping[str, Any], *, duration_ms: int) -> StepOutcome:
    """The step's effect happened."""
    return StepOutcome(StepStatus.COMPLETED, duration_ms=duration_ms, result=dict(result))


def failed(error: str, *, retryable: bool, duration_ms: int = 0,
           result: Mapping[str, Any] | None = None) -> StepOutcome:
    """The step's effect did not happen (or not wholly: ``result["delivered"]`` lists what did)."""
    return StepOutcome(StepStatus.FAILED, duration_ms=duration_ms, result=dict(result or {}),
                       error=clean_text(error, ERROR_CHARS), retryable=retryable)


def dry_run(result: Mapping[str, Any], *, duration_ms: int = 0) -> StepOutcome:
    """A test-mode attempt: nothing was sent; ``result`` says what would have been."""
    return StepOutcome(StepStatus.DRY_RUN, duration_ms=duration_ms, result=dict(result))


def clean_text(text: str, limit: int) -> str:
    """``text`` fit for a Postgres text column and a log line: no NUL, at most ``limit`` characters."""
    cleaned = text.replace("\x00", "\ufffd")
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def template_context(call: ActionCall) -> dict[str, Any]:
    """What templates of ``call``'s step see: the context plus ``run.*`` (unless the context has a
    ``run``) and ``credentials.*`` (always the stored ones: a trigger's data cannot stand in for them)."""
    run = {"id": call.run_id, "automation_id": call.automation_id, "automation_version": call.automation_version,
           "step_id": call.step_id, "attempt": call.attempt, "test_mode": call.test_mode}
    return {"run": run, **call.context, "credentials": dict(call.credentials)}


_SECRET_WORDS: Final = ("auth", "token", "secret", "password", "passwd", "key", "signature", "cookie", "session",
                        "credential")


def is_secret_name(name: str) -> bool:
    """Whether a header or query parameter called ``name`` likely carries a credential."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)
