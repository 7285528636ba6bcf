"""Projection of trigger and run events onto timeline entries (pure: no I/O, no clock).

One entry per run (id = run id) and one per skipped trigger (id = ``skip_id``). An entry is
a set of *facts*: what one event contributed, filed under the part of the entry it describes
(``trigger``, ``started``, ``finished``, ``step:<step id>``). Two facts competing for the same
part are resolved by a total order (sequence, event id, source, content), so merging a fact is
associative, commutative and idempotent: any permutation of a run's events, with or without
duplicates, yields the same facts. Every visible field of an entry is rendered from its facts
alone, which is why a late ``trigger.detected`` still fills in the name and trigger time, and
why a terminal result is never overwritten by an earlier event that arrives later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import (
    ActionCompleted,
    ActionScheduled,
    Payload,
    RunFinished,
    RunStarted,
    RunStatus,
    StepStatus,
    TriggerDetected,
    TriggerSkipped,
)

TRIGGER_DETECTED = "trigger.detected"
TRIGGER_SKIPPED = "trigger.skipped"
RUN_STARTED = "run.started"
ACTION_COMPLETED = "action.completed"
ACTION_SCHEDULED = "action.scheduled"
RUN_FINISHED = "run.finished"

PROJECTED_TYPES: dict[str, type[Payload]] = {
    TRIGGER_DETECTED: TriggerDetected,
    TRIGGER_SKIPPED: TriggerSkipped,
    RUN_STARTED: RunStarted,
    ACTION_COMPLETED: ActionCompleted,
    ACTION_SCHEDULED: ActionScheduled,
    RUN_FINISHED: RunFinished,
}

TRIGGER = "trigger"
STARTED = "started"
FINISHED = "finished"
STEP_PREFIX = "step:"
SCHEDULED = "scheduled"


class Result(StrEnum):
    """What the timeline says about an entry (the ``result`` filter vocabulary)."""

    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SKIPPED = "skipped"


TERMINAL_RESULTS = frozenset(Result) - {Result.RUNNING}

RUN_STATUS_RESULTS: dict[str, Result] = {
    RunStatus.SUCCEEDED.value: Result.SUCCESS,
    RunStatus.FAILED.value: Result.FAILED,
    RunStatus.REJECTED.value: Result.REJECTED,
    RunStatus.EXPIRED.value: Result.EXPIRED,
    RunStatus.CANCELLED.value: Result.CANCELLED,
}


class EntryKind(StrEnum):
    """Whether an entry describes a run or a trigger that matched but did not fire."""

    RUN = "run"
    SKIP = "skip"


class ProjectionConflict(ValueError):
    """An event cannot belong to the entry it names (other tenant, or run vs. skip)."""


@dataclass(frozen=True)
class EventMeta:
    """Envelope attributes the projection needs, with the event time always known."""

    event_id: str
    source: str
    tenant_id: str
    time: datetime
    correlation_id: str | None = None

    @classmethod
    def from_envelope(cls, envelope: Envelope, *, received_at: datetime) -> EventMeta:
        """Meta of ``envelope``; ``received_at`` (the Kafka record time) stands in for a missing
        ``time`` so replaying the log gives the same value again."""
        return cls(
            event_id=envelope.id,
            source=envelope.source,
            tenant_id=envelope.tenantid,
            time=envelope.time or received_at,
            correlation_id=envelope.correlationid,
        )


ProjectedEvent = tuple[str, Payload, EventMeta]
"""One event as the projection sees it: wire type, typed payload, envelope attributes."""


@dataclass(frozen=True)
class Fact:
    """What one event contributed to an entry. ``values`` holds JSON-ready data only."""

    event_type: str
    sequence: int
    event_id: str
    source: str
    time: datetime
    values: Mapping[str, Any]

    def rank(self) -> tuple[int, str, str, str]:
        """Total order among competing facts; the greatest wins."""
        return (self.sequence, self.event_id, self.source, _canonical(self.values))


@dataclass(frozen=True)
class TimelineEntry:
    """One timeline row: a run or a skipped trigger, rendered from its facts.

    Fields are never mutated; ``metadata`` and ``facts`` are plain JSON-ready mappings.
    """

    id: str
    tenant_id: str
    kind: EntryKind
    automation_id: str
    automation_version: int
    automation_name: str | None
    category: str | None
    trigger_type: str | None
    timestamp: datetime
    result: Result
    message: str | None
    run_id: str | None
    metadata: Mapping[str, Any]
    updated_at: datetime
    facts: Mapping[str, Fact] = field(repr=False)

    @property
    def workflow_id(self) -> str | None:
        """The run is the workflow: same id."""
        return self.run_id


def entry_id_of(payload: Payload) -> str:
    """The id of the entry ``payload`` belongs to: its run id, or the skip id."""
    if isinstance(payload, TriggerSkipped):
        return payload.skip_id
    run_id = getattr(payload, "run_id", None)
    if not isinstance(run_id, str):
        raise TypeError(f"{type(payload).__name__} is not projected onto the timeline")
    return run_id


def kind_of(payload: Payload) -> EntryKind:
    """Whether ``payload`` describes a skip or a run."""
    return EntryKind.SKIP if isinstance(payload, TriggerSkipped) else EntryKind.RUN


def project(entry: TimelineEntry | None, event_type: str, payload: Payload, meta: EventMeta) -> TimelineEntry:
    """The entry after applying one event to it (``None``: the entry does not exist yet).

    Raises:
        TypeError: ``payload`` is not the model of ``event_type`` or is not projected.
        ProjectionConflict: ``entry`` belongs to another tenant, id or kind.
    """
    return project_all(entry, [(event_type, payload, meta)])


def project_all(entry: TimelineEntry | None, events: Iterable[ProjectedEvent]) -> TimelineEntry:
    """The entry after applying ``events`` to it, in order; equal to folding :func:`project`.

    Facts are merged first and the entry rendered once, so a batch costs one render per entry
    rather than one per event. The first event fixes the tenant and kind of an entry that does
    not exist yet; a later event disagreeing with them is a conflict exactly as it would be
    had the events been projected one by one. When no fact changes (only duplicates), ``entry``
    itself is returned, so callers can skip the write by identity or equality.

    Raises:
        TypeError: a payload is not the model of its event type or is not projected.
        ProjectionConflict: an event belongs to another tenant, id or kind than the entry.
        ValueError: ``entry`` is ``None`` and there are no events.
    """
    identity: tuple[str, str, EntryKind] | None = None
    facts: dict[str, Fact] = {}
    if entry is not None:
        identity = (entry.id, entry.tenant_id, entry.kind)
        facts = dict(entry.facts)
    changed = False
    for event_type, payload, meta in events:
        expected = PROJECTED_TYPES.get(event_type)
        if expected is None or not isinstance(payload, expected):
            raise TypeError(f"{type(payload).__name__} is not the projected model of {event_type!r}")
        entry_id = entry_id_of(payload)
        kind = kind_of(payload)
        if identity is None:
            identity = (entry_id, meta.tenant_id, kind)
        else:
            _check_identity(identity, entry_id, kind, meta)
        part, fact = fact_of(event_type, payload, meta)
        current = facts.get(part)
        if current is None or fact.rank() > current.rank():
            facts[part] = fact
            changed = True
    if identity is None:
        raise ValueError("projecting no events onto no entry")
    if entry is not None and not changed:
        return entry
    return render(*identity, facts)


def _check_identity(identity: tuple[str, str, EntryKind], entry_id: str, kind: EntryKind, meta: EventMeta) -> None:
    """Raise :class:`ProjectionConflict` unless the event belongs to the entry ``identity`` names."""
    current_id, tenant_id, current_kind = identity
    if current_id != entry_id:
        raise ProjectionConflict(f"event for entry {entry_id!r} applied to entry {current_id!r}")
    if tenant_id != meta.tenant_id:
        raise ProjectionConflict(f"entry {entry_id!r} belongs to another tenant")
    if current_kind is not kind:
        raise ProjectionConflict(f"entry {entry_id!r} is a {current_kind.value}, not a {kind.value}")


def fact_of(event_type: str, payload: Payload, meta: EventMeta) -> tuple[str, Fact]:
    """The part of the entry an event describes and the fact it contributes to it."""
    values: dict[str, Any]
    sequence = int(getattr(payload, "sequence", 0))
    if isinstance(payload, TriggerDetected):
        part = TRIGGER
        values = payload.model_dump(
            mode="json",
            include={"automation_id", "automation_version", "automation_name", "category", "trigger_kind",
                     "trigger_event", "condition_results", "test_mode"},
        )
        values["correlation_id"] = meta.correlation_id
    elif isinstance(payload, TriggerSkipped):
        part = TRIGGER
        values = payload.model_dump(
            mode="json",
            include={"automation_id", "automation_version", "automation_name", "category", "trigger_kind",
                     "trigger_event", "condition_results", "reason", "message"},
        )
        values["correlation_id"] = meta.correlation_id
    elif isinstance(payload, RunStarted):
        part = STARTED
        values = payload.model_dump(
            mode="json",
            include={"automation_id", "automation_version", "automation_name", "category", "trigger_kind",
                     "steps_total", "test_mode"},
        )
    elif isinstance(payload, ActionCompleted):
        part = STEP_PREFIX + payload.step_id
        values = payload.model_dump(
            mode="json",
            include={"automation_id", "automation_version", "step_id", "action_type", "status", "attempt",
                     "duration_ms", "error", "retryable"},
        )
    elif isinstance(payload, ActionScheduled):
        part = STEP_PREFIX + payload.step_id
        values = payload.model_dump(
            mode="json", include={"automation_id", "automation_version", "step_id", "attempt", "reason", "due_at"}
        )
        values["status"] = SCHEDULED
    elif isinstance(payload, RunFinished):
        part = FINISHED
        values = payload.model_dump(
            mode="json",
            include={"automation_id", "automation_version", "status", "duration_ms", "message",
                     "steps_completed", "steps_failed"},
        )
    else:
        raise TypeError(f"{type(payload).__name__} ({event_type}) is not projected onto the timeline")
    return part, Fact(event_type=event_type, sequence=sequence, event_id=meta.event_id, source=meta.source,
                      time=meta.time, values=values)


def render(entry_id: str, tenant_id: str, kind: EntryKind, facts: Mapping[str, Fact]) -> TimelineEntry:
    """Every visible field of an entry, as a function of its facts only."""
    if not facts:
        raise ValueError("an entry needs at least one fact")
    trigger = facts.get(TRIGGER)
    started = facts.get(STARTED)
    finished = facts.get(FINISHED)
    steps = {part.removeprefix(STEP_PREFIX): fact for part, fact in facts.items() if part.startswith(STEP_PREFIX)}
    ordered = [fact for fact in (trigger, started, finished) if fact is not None]
    ordered += [steps[step_id] for step_id in sorted(steps)]
    described = [fact for fact in (trigger, started) if fact is not None]

    result = _result(kind, finished)
    updated_at = max(fact.time for fact in facts.values())
    metadata: dict[str, Any] = {
        "automation_version": _first(ordered, "automation_version"),
        "trigger_event": trigger.values.get("trigger_event") if trigger else None,
        "condition_results": list(trigger.values.get("condition_results") or ()) if trigger else [],
        "correlation_id": trigger.values.get("correlation_id") if trigger else None,
        "updated_at": updated_at.isoformat(),
    }
    if kind is EntryKind.SKIP:
        metadata["skip_reason"] = trigger.values.get("reason") if trigger else None
    else:
        step_view = {step_id: _step_view(fact) for step_id, fact in steps.items()}
        metadata.update({
            "test_mode": bool(_first(described, "test_mode") or False),
            "steps_total": started.values.get("steps_total") if started else None,
            "steps": step_view,
            "steps_completed": finished.values.get("steps_completed") if finished
            else _count(step_view, StepStatus.COMPLETED, StepStatus.DRY_RUN),
            "steps_failed": finished.values.get("steps_failed") if finished
            else _count(step_view, StepStatus.FAILED),
            "duration_ms": finished.values.get("duration_ms") if finished else None,
            "run_status": finished.values.get("status") if finished else None,
            "started_at": started.time.isoformat() if started else None,
            "finished_at": finished.time.isoformat() if finished else None,
        })
    return TimelineEntry(
        id=entry_id,
        tenant_id=tenant_id,
        kind=kind,
        automation_id=str(_first(ordered, "automation_id")),
        automation_version=int(_first(ordered, "automation_version")),
        automation_name=_first(described, "automation_name"),
        category=_first(described, "category"),
        trigger_type=_first(described, "trigger_kind"),
        timestamp=trigger.time if trigger else min(fact.time for fact in facts.values()),
        result=result,
        message=_message(result, trigger, started, finished, metadata),
        run_id=entry_id if kind is EntryKind.RUN else None,
        metadata=metadata,
        updated_at=updated_at,
        facts=dict(facts),
    )


def facts_to_document(facts: Mapping[str, Fact]) -> dict[str, Any]:
    """JSON-ready form of an entry's facts (stored with the row so it can be re-projected)."""
    return {
        part: {"event_type": fact.event_type, "sequence": fact.sequence, "event_id": fact.event_id,
               "source": fact.source, "time": fact.time.isoformat(), "values": dict(fact.values)}
        for part, fact in facts.items()
    }


def facts_from_document(document: Mapping[str, Any]) -> dict[str, Fact]:
    """Inverse of :func:`facts_to_document`."""
    return {
        part: Fact(event_type=item["event_type"], sequence=int(item["sequence"]), event_id=item["event_id"],
                   source=item["source"], time=datetime.fromisoformat(item["time"]), values=dict(item["values"]))
        for part, item in document.items()
    }


def _result(kind: EntryKind, finished: Fact | None) -> Result:
    if kind is EntryKind.SKIP:
        return Result.SKIPPED
    if finished is None:
        return Result.RUNNING
    return RUN_STATUS_RESULTS[str(finished.values["status"])]


def _message(result: Result, trigger: Fact | None, started: Fact | None, finished: Fact | None,
             metadata: Mapping[str, Any]) -> str | None:
    if result is Result.SKIPPED:
        return str(trigger.values["message"]) if trigger else None
    if finished is not None:
        return str(finished.values["message"])
    if started is None and not metadata["steps"]:
        return "Triggered; waiting for the run to start"
    total = started.values.get("steps_total") if started else None
    done = metadata["steps_completed"]
    return f"Running: {done} of {total} steps completed" if total is not None else f"Running: {done} steps completed"


def _step_view(fact: Fact) -> dict[str, Any]:
    view = {key: value for key, value in fact.values.items()
            if key not in ("automation_id", "automation_version", "step_id")}
    view["updated_at"] = fact.time.isoformat()
    return view


def _count(steps: Mapping[str, Mapping[str, Any]], *statuses: StepStatus) -> int:
    wanted = {status.value for status in statuses}
    return sum(1 for step in steps.values() if step.get("status") in wanted)


def _first(facts: list[Fact], key: str) -> Any:
    """The value of ``key`` from the first fact (in precedence order) that carries it."""
    for fact in facts:
        value = fact.values.get(key)
        if value is not None:
            return value
    return None


def _canonical(values: Mapping[str, Any]) -> str:
    return json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
