"""Projection of trigger and run events onto timeline entries (pure: no I/O, no clock).

One entry per run (id = run id) and one per skipped trigger (id = ``skip_id``). An entry is
a set of *facts*: what one event contributed, filed under the part of the entry it describes
(``trigger``, ``started``, ``finished``, ``step:<step id>``, ``approval:<approval id>``,
``decision:<approval id>``). Two facts competing for the same
part are resolved by a total order (sequence, event id, source, content), so merging a fact is
associative, commutative and idempotent: any permutation of a run's events, with or without
duplicates, yields the same facts. Every visible field of an entry is rendered from its facts
alone, which is why a late ``trigger.detected`` still fills in the name and trigger time, and
why a terminal result is never overwritten by an earlier event that arrives later.

A run's status is read from its facts too: finished (unless a step or approval fact carries a
later run sequence: a manual retry re-opened it), awaiting approval (a request without its
decision), rejected or expired (a decision saying so, before ``run.finished`` confirms it), else
running. ``approval.decided`` comes from the approvals service, which does not know the run's
sequence, so decisions never re-open a run; they are paired with their request by approval id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import (
    ActionCompleted,
    ActionScheduled,
    ApprovalDecided,
    ApprovalDecision,
    ApprovalRequested,
    Payload,
    RunFinished,
    RunStarted,
    RunStatus,
    StepStatus,
    TriggerDetected,
    TriggerSkipped,
)

from timeline_projector.domain.messages import (
    capitalize,
    describe_actions,
    describe_failure,
    skip_message,
    summarize_actions,
)

TRIGGER_DETECTED = "trigger.detected"
TRIGGER_SKIPPED = "trigger.skipped"
RUN_STARTED = "run.started"
ACTION_COMPLETED = "action.completed"
ACTION_SCHEDULED = "action.scheduled"
RUN_FINISHED = "run.finished"
APPROVAL_REQUESTED = "approval.requested"
APPROVAL_DECIDED = "approval.decided"

PROJECTED_TYPES: dict[str, type[Payload]] = {
    TRIGGER_DETECTED: TriggerDetected,
    TRIGGER_SKIPPED: TriggerSkipped,
    RUN_STARTED: RunStarted,
    ACTION_COMPLETED: ActionCompleted,
    ACTION_SCHEDULED: ActionScheduled,
    RUN_FINISHED: RunFinished,
    APPROVAL_REQUESTED: ApprovalRequested,
    APPROVAL_DECIDED: ApprovalDecided,
}

TRIGGER = "trigger"
STARTED = "started"
FINISHED = "finished"
STEP_PREFIX = "step:"
APPROVAL_PREFIX = "approval:"
DECISION_PREFIX = "decision:"
SCHEDULED = "scheduled"


class Result(StrEnum):
    """What the timeline says about an entry (the ``result`` filter vocabulary)."""

    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SKIPPED = "skipped"


TERMINAL_RESULTS = frozenset(Result) - {Result.RUNNING, Result.AWAITING_APPROVAL}
LIVE_RESULTS = frozenset({Result.RUNNING, Result.AWAITING_APPROVAL})

MAX_REASON = 200
"""Longest failure reason kept for the failure-reasons aggregate (it is a grouping key)."""

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
    test_mode: bool
    """A dry run (``test_mode`` on ``trigger.detected`` or ``run.started``): flagged, kept out of stats."""
    duration_ms: int | None
    """Run duration once it finished (null while live, and for skips)."""
    approval_waits_ms: tuple[int, ...]
    """Request-to-decision time of each decided approval of the run (event times)."""
    failure_reason: str | None
    """Why a failed run failed: the failed step's error, else the run's outcome message."""
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
        values["actions"] = summarize_actions(payload.actions)
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
    elif isinstance(payload, ApprovalRequested):
        part = APPROVAL_PREFIX + payload.approval_id
        values = payload.model_dump(
            mode="json",
            include={"automation_id", "automation_version", "approval_id", "step_id", "risk_level", "reason",
                     "expires_at"},
        )
    elif isinstance(payload, ApprovalDecided):
        part = DECISION_PREFIX + payload.approval_id
        values = payload.model_dump(
            mode="json",
            include={"automation_id", "automation_version", "approval_id", "step_id", "decision", "decided_by",
                     "automatic", "reason"},
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
    requests = {part.removeprefix(APPROVAL_PREFIX): fact for part, fact in facts.items()
                if part.startswith(APPROVAL_PREFIX)}
    decisions = {part.removeprefix(DECISION_PREFIX): fact for part, fact in facts.items()
                 if part.startswith(DECISION_PREFIX)}
    ordered = [fact for fact in (trigger, started, finished) if fact is not None]
    ordered += [steps[step_id] for step_id in sorted(steps)]
    ordered += [requests[key] for key in sorted(requests)] + [decisions[key] for key in sorted(decisions)]
    described = [fact for fact in (trigger, started) if fact is not None]

    result = _result(kind, finished, steps, requests, decisions)
    updated_at = max(fact.time for fact in facts.values())
    test_mode = kind is EntryKind.RUN and bool(_first(described, "test_mode") or False)
    metadata: dict[str, Any] = {
        "automation_version": _first(ordered, "automation_version"),
        "trigger_event": trigger.values.get("trigger_event") if trigger else None,
        "condition_results": list(trigger.values.get("condition_results") or ()) if trigger else [],
        "correlation_id": trigger.values.get("correlation_id") if trigger else None,
        "updated_at": updated_at.isoformat(),
        "test_mode": test_mode,
    }
    if kind is EntryKind.SKIP:
        metadata["skip_reason"] = trigger.values.get("reason") if trigger else None
        metadata["outcome_message"] = trigger.values.get("message") if trigger else None
    else:
        step_view = {step_id: _step_view(fact) for step_id, fact in steps.items()}
        metadata.update({
            "steps_total": started.values.get("steps_total") if started else None,
            "steps": step_view,
            "steps_completed": finished.values.get("steps_completed") if finished
            else _count(step_view, StepStatus.COMPLETED, StepStatus.DRY_RUN),
            "steps_failed": finished.values.get("steps_failed") if finished
            else _count(step_view, StepStatus.FAILED),
            "duration_ms": finished.values.get("duration_ms") if finished else None,
            "run_status": _run_status(result, finished),
            "started_at": started.time.isoformat() if started else None,
            "finished_at": finished.time.isoformat() if finished and result not in LIVE_RESULTS else None,
            "outcome_message": finished.values.get("message") if finished else None,
            "actions": list(trigger.values.get("actions") or ()) if trigger else [],
            "approvals": [_approval_view(requests.get(key), decisions.get(key))
                          for key in sorted(set(requests) | set(decisions))],
        })
    finished_duration = finished.values.get("duration_ms") if finished else None
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
        message=_message(result, trigger, started, finished, steps, requests, decisions, metadata),
        run_id=entry_id if kind is EntryKind.RUN else None,
        metadata=metadata,
        updated_at=updated_at,
        test_mode=test_mode,
        duration_ms=int(finished_duration) if finished_duration is not None and result not in LIVE_RESULTS
        and kind is EntryKind.RUN else None,
        approval_waits_ms=tuple(sorted(
            _wait_ms(requests[key], decisions[key]) for key in set(requests) & set(decisions))),
        failure_reason=_failure_reason(finished, steps) if result is Result.FAILED else None,
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


def _result(kind: EntryKind, finished: Fact | None, steps: Mapping[str, Fact], requests: Mapping[str, Fact],
            decisions: Mapping[str, Fact]) -> Result:
    if kind is EntryKind.SKIP:
        return Result.SKIPPED
    if finished is not None and not _reopened(finished, steps, requests):
        return RUN_STATUS_RESULTS[str(finished.values["status"])]
    if any(key not in decisions for key in requests):
        return Result.AWAITING_APPROVAL
    verdicts = {str(fact.values.get("decision")) for fact in decisions.values()}
    if ApprovalDecision.REJECTED.value in verdicts:
        return Result.REJECTED
    if ApprovalDecision.EXPIRED.value in verdicts:
        return Result.EXPIRED
    return Result.RUNNING


def _reopened(finished: Fact, steps: Mapping[str, Fact], requests: Mapping[str, Fact]) -> bool:
    """Whether the executor wrote about the run after it finished (a manual retry re-opened it)."""
    return any(fact.sequence > finished.sequence for fact in (*steps.values(), *requests.values()))


def _run_status(result: Result, finished: Fact | None) -> str | None:
    if result is Result.SKIPPED:
        return None
    if result in LIVE_RESULTS:
        return result.value
    return str(finished.values["status"]) if finished is not None else result.value


def _message(result: Result, trigger: Fact | None, started: Fact | None, finished: Fact | None,
             steps: Mapping[str, Fact], requests: Mapping[str, Fact], decisions: Mapping[str, Fact],
             metadata: Mapping[str, Any]) -> str | None:
    """The human-readable sentence of an entry (see :mod:`timeline_projector.domain.messages`)."""
    if result is Result.SKIPPED:
        return skip_message(str(trigger.values["message"])) if trigger else None
    actions = {str(action.get("id")): action for action in metadata["actions"]}
    if result is Result.SUCCESS:
        done = [_summary(step_id, steps[step_id], actions) for step_id in _chain_order(steps, metadata["actions"])
                if steps[step_id].values.get("status") in (StepStatus.COMPLETED.value, StepStatus.DRY_RUN.value)]
        sentence = describe_actions(done, test_mode=bool(metadata["test_mode"]))
        if sentence is not None:
            return sentence
    if result is Result.FAILED:
        failed = _failed_step(steps)
        if failed is not None:
            step_id, fact = failed
            return describe_failure(_summary(step_id, fact, actions), fact.values.get("error"))
    if result is Result.AWAITING_APPROVAL:
        pending = [requests[key] for key in sorted(requests) if key not in decisions]
        reason = pending[0].values.get("reason") if pending else None
        return f"Awaiting approval: {reason}" if reason else "Awaiting approval"
    if finished is not None and result not in LIVE_RESULTS:
        return capitalize(str(finished.values["message"]))
    if result in (Result.REJECTED, Result.EXPIRED):
        return _decision_message(decisions)
    if started is None and not steps:
        return "Triggered; waiting for the run to start"
    total = started.values.get("steps_total") if started else None
    done_count = _count(metadata["steps"], StepStatus.COMPLETED, StepStatus.DRY_RUN)
    return (f"Running: {done_count} of {total} steps completed" if total is not None
            else f"Running: {done_count} steps completed")


def _decision_message(decisions: Mapping[str, Fact]) -> str:
    for key in sorted(decisions):
        values = decisions[key].values
        if values.get("decision") == ApprovalDecision.REJECTED.value:
            who = "automatically" if values.get("automatic") else f"by {values.get('decided_by')}"
            why = f": {values['reason']}" if values.get("reason") else ""
            return f"Approval rejected {who}{why}"
    return "Approval expired undecided"


def _summary(step_id: str, fact: Fact, actions: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
    """The rule's summary of a step if the trigger fact has it, else what the step's own fact says."""
    return actions.get(step_id) or {"id": step_id, "type": fact.values.get("action_type") or "action"}


def _chain_order(steps: Mapping[str, Fact], actions: list[Mapping[str, Any]]) -> list[str]:
    return chain_order(steps, actions)


def chain_order(step_ids: Iterable[str], actions: Iterable[Mapping[str, Any]]) -> list[str]:
    """Step ids in the order of the rule's chain when known (``actions``, the trigger's summary),
    then the others in natural order (``step-2`` before ``step-10``)."""
    present = set(step_ids)
    known = [str(action.get("id")) for action in actions if str(action.get("id")) in present]
    return known + sorted(present - set(known), key=natural_key)


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key comparing digit runs as numbers."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text))


def _failed_step(steps: Mapping[str, Fact]) -> tuple[str, Fact] | None:
    """The failed step whose outcome came last (the one the run failed at)."""
    failed = [(fact.rank(), step_id, fact) for step_id, fact in steps.items()
              if fact.values.get("status") == StepStatus.FAILED.value]
    if not failed:
        return None
    _rank, step_id, fact = max(failed, key=lambda item: (item[0], item[1]))
    return step_id, fact


def _failure_reason(finished: Fact | None, steps: Mapping[str, Fact]) -> str:
    failed = _failed_step(steps)
    reason = failed[1].values.get("error") if failed is not None else None
    if not reason and finished is not None:
        reason = finished.values.get("message")
    return str(reason or "unknown")[:MAX_REASON]


def _approval_view(request: Fact | None, decision: Fact | None) -> dict[str, Any]:
    view: dict[str, Any] = {}
    if request is not None:
        view.update({key: request.values.get(key) for key in ("approval_id", "step_id", "risk_level", "reason",
                                                               "expires_at")})
        view["requested_at"] = request.time.isoformat()
    if decision is not None:
        view.update({"approval_id": decision.values.get("approval_id"), "step_id": decision.values.get("step_id"),
                     "decision": decision.values.get("decision"), "decided_by": decision.values.get("decided_by"),
                     "automatic": decision.values.get("automatic"), "decision_reason": decision.values.get("reason"),
                     "decided_at": decision.time.isoformat()})
    if request is not None and decision is not None:
        view["wait_ms"] = _wait_ms(request, decision)
    return view


def _wait_ms(request: Fact, decision: Fact) -> int:
    """Request-to-decision time; never negative (a decision stamped before its request counts zero)."""
    return max(0, int((decision.time - request.time).total_seconds() * 1000))


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
