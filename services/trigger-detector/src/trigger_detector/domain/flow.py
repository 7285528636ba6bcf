"""Flow control over a batch of decisions: dedupe, rate limits, deleted subjects, runaway rules.

Runs after the trigger kinds have decided, over the ``trigger.detected`` decisions only, in
batch order, against what has fired before (``Fire`` rows the adapter keeps in the same
transaction). A detection that flow control stops becomes a ``trigger.skipped`` with the reason,
under an id derived from the run id, so deciding the batch again gives the same answer:

* **subject deleted** — a ``subject.deleted`` event for the subject happened before the trigger;
* **duplicate** — the rule fired for the same subject within its ``dedupe_window_minutes``
  (simultaneous triggers collapse to one run);
* **rate limited** — the rule fired ``max_runs`` times in its last ``per_minutes``: policy
  ``skip`` skips it; ``defer`` holds the detection (same run id) until the limit lets it through,
  when the deferred-firings loop releases it — none is lost;
* **runaway** — the rule fired for one subject more than ``runaway_limit`` times within
  ``runaway_window``: that detection is skipped as a loop and the rule is to be set ``failed`` —
  as is a rule a trigger kind skipped as a loop (its own action caused the event).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from automation_shared import topics
from automation_shared.contracts.events import SkipReason, TriggerSkipped
from automation_shared.contracts.registry import build
from automation_shared.delivery import Outgoing

from trigger_detector.domain.detection import SOURCE, ActiveRule, stable_id

SUBJECT_DELETED_EVENT: Final = "subject.deleted"


@dataclass(frozen=True)
class Fire:
    """A rule fired for a subject ("" without one) at a time."""

    automation_id: str
    subject: str
    at: datetime


@dataclass(frozen=True)
class Limits:
    """Runaway protection: more than ``runaway_limit`` fires of one rule for one subject within
    ``runaway_window`` mean the rule feeds itself (or something is wrong): it is stopped."""

    runaway_limit: int = 20
    runaway_window: timedelta = timedelta(minutes=10)


@dataclass
class Verdict:
    """What flow control made of a batch."""

    outgoing: list[Outgoing]
    fires: list[Fire] = field(default_factory=list)
    """New fires to record."""
    runaway: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Automation id → (tenant, why) of each rule that must be set ``failed``."""
    deferred: list[tuple[Outgoing, datetime]] = field(default_factory=list)
    """Detections over a ``defer`` rate limit, and when the limit lets them through."""


def next_allowed(rule: ActiveRule, fires: Sequence[Fire], *, now: datetime) -> datetime | None:
    """When ``rule``'s rate limit next lets a run through (None: now)."""
    limit = rule.definition.flow_control.rate_limit
    if limit is None:
        return None
    window = timedelta(minutes=limit.per_minutes)
    recent = sorted(f.at for f in fires if f.automation_id == rule.automation_id and f.at > now - window)
    if len(recent) < limit.max_runs:
        return None
    return recent[len(recent) - limit.max_runs] + window


def subject_window(rule: ActiveRule, limits: Limits) -> timedelta:
    """How far back a (rule, subject)'s fires matter: its dedupe window and runaway protection."""
    return max(timedelta(minutes=rule.definition.flow_control.dedupe_window_minutes or 0), limits.runaway_window)


def rule_window(rule: ActiveRule) -> timedelta | None:
    """How far back all of a rule's fires matter (its rate limit), or None without one."""
    limit = rule.definition.flow_control.rate_limit
    return timedelta(minutes=limit.per_minutes) if limit is not None else None


def _skipped(detected: Outgoing, reason: SkipReason, message: str, now: datetime) -> Outgoing:
    """The ``trigger.skipped`` that replaces a detection flow control stopped."""
    assert detected.envelope is not None
    data: dict[str, Any] = detected.envelope.data
    skip_id = stable_id("skip", reason.value, data["run_id"])
    payload = TriggerSkipped(
        skip_id=skip_id, automation_id=data["automation_id"], automation_version=data["automation_version"],
        automation_name=data["automation_name"], category=data["category"], trigger_kind=data["trigger_kind"],
        trigger_event=data.get("trigger_event"), reason=reason, message=message,
        condition_results=data.get("condition_results", ()),
    )
    envelope = detected.envelope
    skipped = build(payload, event_id=skip_id, source=SOURCE, tenant_id=envelope.tenantid, time=envelope.time or now,
                    subject=envelope.subject, automation_id=data["automation_id"])
    skipped = skipped.model_copy(update={"correlationid": envelope.correlationid,
                                         "causationid": envelope.causationid,
                                         "automationchain": envelope.automationchain})
    return Outgoing(topic=topics.TRIGGER_SKIPPED, key=data["automation_id"], envelope=skipped)


def apply(decisions: Sequence[Outgoing], rules: Mapping[str, ActiveRule], history: Sequence[Fire],
          deleted_subjects: Mapping[tuple[str, str], datetime], *, now: datetime,
          limits: Limits = Limits()) -> Verdict:
    """Flow control over ``decisions`` in order; ``history`` holds the rules' earlier fires and
    ``deleted_subjects`` when each (tenant, subject) was deleted."""
    fires = list(history)
    verdict = Verdict(outgoing=[])
    for decision in decisions:
        envelope = decision.envelope
        data: dict[str, Any] = envelope.data if envelope is not None else {}
        if decision.topic == topics.TRIGGER_SKIPPED and data.get("reason") == SkipReason.LOOP_DETECTED.value:
            verdict.runaway.setdefault(data["automation_id"], (envelope.tenantid if envelope else "",
                                                               data.get("message", "loop detected")))
        rule = rules.get(data.get("automation_id", ""))
        if decision.topic != topics.TRIGGER_DETECTED or envelope is None or rule is None:
            verdict.outgoing.append(decision)
            continue
        subject = envelope.subject or ""
        control = rule.definition.flow_control
        mine = [f for f in fires if f.automation_id == rule.automation_id]
        same_subject = [f for f in mine if f.subject == subject]
        stop: tuple[SkipReason, str] | None = None
        deleted_at = deleted_subjects.get((envelope.tenantid, subject)) if subject else None
        happened = (data.get("trigger_event") or {}).get("time") or envelope.time or now
        if isinstance(happened, str):
            happened = datetime.fromisoformat(happened)
        if deleted_at is not None and happened >= deleted_at:
            stop = (SkipReason.SUBJECT_DELETED, f"subject {subject} was deleted")
        elif control.dedupe_window_minutes and any(
                f.at > now - timedelta(minutes=control.dedupe_window_minutes) for f in same_subject):
            stop = (SkipReason.DUPLICATE, f"already fired for {subject or 'this rule'} within the last "
                                          f"{control.dedupe_window_minutes} minutes")
        elif control.rate_limit is not None and (until := next_allowed(rule, mine, now=now)) is not None:
            if control.rate_limit.policy == "defer":
                verdict.deferred.append((decision, until))
                continue
            stop = (SkipReason.RATE_LIMITED, f"rate limit of {control.rate_limit.max_runs} runs per "
                                             f"{control.rate_limit.per_minutes} minutes reached")
        elif sum(1 for f in same_subject if f.at > now - limits.runaway_window) >= limits.runaway_limit:
            why = (f"fired {limits.runaway_limit} times for {subject or 'no subject'} within "
                   f"{int(limits.runaway_window.total_seconds() // 60)} minutes: stopped as a runaway loop")
            stop = (SkipReason.LOOP_DETECTED, why)
            verdict.runaway.setdefault(rule.automation_id, (envelope.tenantid, why))
        if stop is None:
            fire = Fire(rule.automation_id, subject, now)
            fires.append(fire)
            verdict.fires.append(fire)
            verdict.outgoing.append(decision)
        else:
            verdict.outgoing.append(_skipped(decision, *stop, now))
    return verdict
