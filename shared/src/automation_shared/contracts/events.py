"""Payload models of every event type the platform emits (DESIGN §4), version 1.

Each model is frozen, documents every field, and is registered in ``registry.py`` under its
explicit wire type and version. Domain events on ``domain.events`` are upstream-defined and
keep their ``data`` as a plain mapping.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from automation_shared.contracts.rules import Governance, Step


class Payload(BaseModel):
    """Base of every payload model: frozen, tolerant of added fields."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class RunScoped(Payload):
    """Fields every run-scoped event carries."""

    run_id: str = Field(description="Run id (also the Kafka key of run-scoped topics).")
    automation_id: str = Field(description="Automation (rule) id.")
    automation_version: int = Field(ge=1, description="Rule version the run is pinned to.")
    sequence: int = Field(ge=0, description="Per-run sequence number of this event.")


class TriggerKind(StrEnum):
    EVENT = "event"
    SCHEDULE = "schedule"
    THRESHOLD = "threshold"
    BEHAVIOR = "behavior"
    MANUAL = "manual"


class SkipReason(StrEnum):
    CONDITIONS_FAILED = "conditions_failed"
    DUPLICATE = "duplicate"
    RATE_LIMITED = "rate_limited"
    LOOP_DETECTED = "loop_detected"
    PAUSED = "paused"
    SUBJECT_DELETED = "subject_deleted"
    STILL_RUNNING = "still_running"
    """A schedule slot of a rule whose overlap policy is ``skip_if_running`` while its last run runs."""


class ConditionResult(Payload):
    """The outcome of one condition against the trigger-time context."""

    field: str = Field(description="Context field the condition reads.")
    operator: str = Field(description="Operator, canonical form (e.g. `>`).")
    expected: Any = Field(None, description="Value the rule compares against.")
    actual: Any = Field(None, description="Value found in the context (null when absent).")
    passed: bool = Field(description="Whether the condition held.")


class EventRef(Payload):
    """Reference to the event that fired or was evaluated."""

    id: str = Field(description="Event id.")
    type: str = Field(description="Event type.")
    source: str = Field(description="Event source.")
    subject: str | None = Field(None, description="Event subject.")
    time: datetime | None = Field(None, description="Event time.")


class TriggerDetected(RunScoped):
    """A rule fired: the executor starts a run for it."""

    automation_name: str = Field(description="Rule name at the fired version.")
    category: str = Field(description="Rule category.")
    trigger_kind: TriggerKind = Field(description="Kind of trigger that fired.")
    trigger_event: EventRef | None = Field(None, description="Event that fired the rule, if any.")
    context: dict[str, Any] = Field(default_factory=dict, description="Trigger-time context snapshot.")
    condition_results: tuple[ConditionResult, ...] = Field((), description="Each condition's outcome.")
    actions: tuple[Step, ...] = Field(description="Action chain of the pinned rule version.")
    governance: Governance = Field(default_factory=Governance, description="Governance of the pinned version.")
    test_mode: bool = Field(False, description="Run without real side effects (dry run).")
    owner: str | None = Field(None, description="Rule owner at the pinned version (notification recipient).")
    collaborators: tuple[str, ...] = Field((), description="Rule collaborators (notification recipients).")


class TriggerSkipped(Payload):
    """A rule matched but did not fire, with the reason."""

    skip_id: str = Field(description="Id of this skip decision (timeline entry id).")
    automation_id: str = Field(description="Automation (rule) id.")
    automation_version: int = Field(ge=1, description="Rule version evaluated.")
    automation_name: str = Field(description="Rule name.")
    category: str = Field(description="Rule category.")
    trigger_kind: TriggerKind = Field(description="Kind of trigger that matched.")
    trigger_event: EventRef | None = Field(None, description="Event evaluated, if any.")
    reason: SkipReason = Field(description="Why the rule did not fire.")
    message: str = Field(description="Human-readable explanation.")
    condition_results: tuple[ConditionResult, ...] = Field((), description="Each condition's outcome.")


class RunStarted(RunScoped):
    """The executor created a run for a detected trigger."""

    automation_name: str = Field(description="Rule name.")
    category: str = Field(description="Rule category.")
    trigger_kind: TriggerKind = Field(description="Kind of trigger that fired.")
    steps_total: int = Field(ge=0, description="Top-level steps in the chain.")
    test_mode: bool = Field(False, description="Dry run without side effects.")


class StepStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    DRY_RUN = "dry_run"


class ActionCompleted(RunScoped):
    """One step's outcome."""

    step_id: str = Field(description="Step id within the chain.")
    action_type: str = Field(description="Action type, e.g. `webhook`.")
    status: StepStatus = Field(description="Outcome of the step.")
    attempt: int = Field(ge=1, description="Attempt number (1-based).")
    duration_ms: int = Field(ge=0, description="How long the attempt took.")
    result: dict[str, Any] = Field(default_factory=dict, description="Action-specific result.")
    error: str | None = Field(None, description="Error text when failed.")
    retryable: bool = Field(False, description="Whether the failure may succeed on retry.")
    idempotency_key: str | None = Field(None, description="Key the side effect was sent with.")


class ScheduleReason(StrEnum):
    DELAY = "delay"
    RETRY = "retry"
    MANUAL_RETRY = "manual_retry"
    """A person re-ran a failed run from the step it failed at (the run is running again)."""


class ActionScheduled(RunScoped):
    """A step deferred until ``due_at`` (delay or retry backoff)."""

    step_id: str = Field(description="Step id.")
    reason: ScheduleReason = Field(description="Why the step was deferred.")
    due_at: datetime = Field(description="When the step becomes due.")
    attempt: int = Field(ge=1, description="Attempt that will run at `due_at`.")


class RunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class RunFinished(RunScoped):
    """A run reached a terminal status."""

    status: RunStatus = Field(description="Terminal status.")
    duration_ms: int = Field(ge=0, description="Run duration from start to finish.")
    message: str = Field(description="Human-readable summary of the outcome.")
    steps_completed: int = Field(0, ge=0, description="Steps that completed.")
    steps_failed: int = Field(0, ge=0, description="Steps that failed.")


class ApprovalRequested(RunScoped):
    """Governance is needed before a run or a step proceeds."""

    approval_id: str = Field(description="Approval request id.")
    step_id: str | None = Field(None, description="Step awaiting approval; null for the whole run.")
    risk_level: str = Field(description="low | medium | high | critical.")
    approver_roles: tuple[str, ...] = Field((), description="Roles allowed to decide.")
    reason: str = Field(description="Why approval is needed.")
    expires_at: datetime = Field(description="When the request auto-rejects.")
    context: dict[str, Any] = Field(default_factory=dict, description="What the approver needs to see.")


class ApprovalDecision(StrEnum):
    GRANTED = "granted"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ApprovalDecided(RunScoped):
    """An approval request was decided."""

    approval_id: str = Field(description="Approval request id.")
    step_id: str | None = Field(None, description="Step the decision is about; null for the run.")
    decision: ApprovalDecision = Field(description="granted | rejected | expired.")
    decided_by: str = Field(description="User id, or `system` for automatic decisions.")
    automatic: bool = Field(description="Decided by policy rather than a human.")
    reason: str | None = Field(None, description="Reason given.")


class AutomationSnapshot(Payload):
    """One version of a rule, as published to the compacted ``automation.rules`` topic."""

    automation_id: str = Field(description="Automation id (the Kafka key).")
    version: int = Field(ge=1, description="Version number; every change makes a new one.")
    status: str = Field(description="draft | deployed | paused | failed.")
    definition: dict[str, Any] = Field(description="The full rule definition at this version.")


class CommandIssued(RunScoped):
    """A command for an upstream system (create_task, update_client, …)."""

    command: str = Field(description="Imperative command name, e.g. `create_task`.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Command arguments.")
    idempotency_key: str = Field(description="`run_id:step_id`, the same for every attempt: the consumer's dedupe key.")


class DeadLetter(Payload):
    """What a consumer writes to ``<topic>.dlq`` for a message it cannot process."""

    original_topic: str = Field(description="Topic the message came from.")
    partition: int = Field(description="Partition of the original record.")
    offset: int = Field(description="Offset of the original record.")
    key: str | None = Field(None, description="Original key (UTF-8, replacement on bad bytes).")
    value: str | None = Field(
        None, description="Original value (UTF-8, replacement on bad bytes), cut to a bounded excerpt."
    )
    value_truncated: bool = Field(False, description="Whether `value` is only the start of the original.")
    value_bytes: int = Field(0, ge=0, description="Size of the original value in bytes.")
    value_sha256: str | None = Field(None, description="SHA-256 (hex) of the original value's bytes.")
    consumer: str = Field(description="Consumer group that gave up.")
    error: str = Field(description="Why it could not be processed.")
    error_type: str = Field(description="Error class name.")
    attempts: int = Field(ge=1, description="How many times processing was attempted.")
    failed_at: datetime = Field(description="When it was dead-lettered.")
