"""Builders of the events the timeline projects, shared by the unit and integration tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from automation_shared.contracts.events import (
    ActionCompleted,
    ActionScheduled,
    ApprovalDecided,
    ApprovalRequested,
    ConditionResult,
    EventRef,
    RunFinished,
    RunStarted,
    TriggerDetected,
    TriggerSkipped,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
WEBHOOK = {"type": "webhook", "id": "step-1", "url": "http://127.0.0.1:9/hook"}


def detected(run_id: str = "run-1", *, automation_id: str = "auto-1", name: str = "Big order alert",
             category: str = "sales", sequence: int = 0, trigger_kind: str = "event",
             actions: tuple[dict[str, Any], ...] = (WEBHOOK,), **extra: Any) -> TriggerDetected:
    return TriggerDetected(
        run_id=run_id, automation_id=automation_id, automation_version=3, sequence=sequence,
        automation_name=name, category=category, trigger_kind=trigger_kind,
        trigger_event=EventRef(id="evt-1", type="order.created", source="shop", subject="client-1", time=T0),
        context={"amount": 150},
        condition_results=(ConditionResult(field="amount", operator=">", expected=100, actual=150, passed=True),),
        actions=actions,
        **extra,
    )


def skipped(skip_id: str = "skip-1", *, automation_id: str = "auto-1", category: str = "sales",
            message: str = "conditions not met: amount > 100 (was 50)") -> TriggerSkipped:
    return TriggerSkipped(
        skip_id=skip_id, automation_id=automation_id, automation_version=3, automation_name="Big order alert",
        category=category, trigger_kind="event",
        trigger_event=EventRef(id="evt-2", type="order.created", source="shop", subject="client-1"),
        reason="conditions_failed", message=message,
        condition_results=(ConditionResult(field="amount", operator=">", expected=100, actual=50, passed=False),),
    )


def started(run_id: str = "run-1", *, automation_id: str = "auto-1", name: str = "Big order alert",
            category: str = "sales", steps_total: int = 1, sequence: int = 1, test_mode: bool = False,
            trigger_kind: str = "event") -> RunStarted:
    return RunStarted(run_id=run_id, automation_id=automation_id, automation_version=3, sequence=sequence,
                      automation_name=name, category=category, trigger_kind=trigger_kind, steps_total=steps_total,
                      test_mode=test_mode)


def completed(run_id: str = "run-1", *, step_id: str = "step-1", status: str = "completed", attempt: int = 1,
              sequence: int = 2, duration_ms: int = 120, automation_id: str = "auto-1",
              error: str = "HTTP 503", action_type: str = "webhook") -> ActionCompleted:
    return ActionCompleted(
        run_id=run_id, automation_id=automation_id, automation_version=3, sequence=sequence, step_id=step_id,
        action_type=action_type, status=status, attempt=attempt, duration_ms=duration_ms,
        error=error if status == "failed" else None, retryable=status == "failed",
    )


def scheduled(run_id: str = "run-1", *, step_id: str = "step-1", attempt: int = 2, sequence: int = 3,
              automation_id: str = "auto-1", reason: str = "retry") -> ActionScheduled:
    return ActionScheduled(run_id=run_id, automation_id=automation_id, automation_version=3, sequence=sequence,
                           step_id=step_id, reason=reason, due_at=T0, attempt=attempt)


def finished(run_id: str = "run-1", *, status: str = "succeeded", sequence: int = 9,
             message: str = "all 1 steps completed", duration_ms: int = 480, steps_completed: int = 1,
             steps_failed: int = 0, automation_id: str = "auto-1") -> RunFinished:
    return RunFinished(run_id=run_id, automation_id=automation_id, automation_version=3, sequence=sequence,
                       status=status, duration_ms=duration_ms, message=message,
                       steps_completed=steps_completed, steps_failed=steps_failed)


def requested(run_id: str = "run-1", *, approval_id: str = "appr-1", step_id: str | None = None, sequence: int = 2,
              reason: str = "risk level high needs a human", automation_id: str = "auto-1") -> ApprovalRequested:
    return ApprovalRequested(run_id=run_id, automation_id=automation_id, automation_version=3, sequence=sequence,
                             approval_id=approval_id, step_id=step_id, risk_level="high", approver_roles=("manager",),
                             reason=reason, expires_at=T0)


def decided(run_id: str = "run-1", *, approval_id: str = "appr-1", decision: str = "granted", sequence: int = 0,
            decided_by: str = "bob", automatic: bool = False, reason: str | None = None,
            automation_id: str = "auto-1") -> ApprovalDecided:
    return ApprovalDecided(run_id=run_id, automation_id=automation_id, automation_version=3, sequence=sequence,
                           approval_id=approval_id, decision=decision, decided_by=decided_by, automatic=automatic,
                           reason=reason)
