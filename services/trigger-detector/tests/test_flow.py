"""Flow control: dedupe windows, rate limits, deleted subjects, runaway rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from automation_shared.contracts.envelope import AutomationChain, Envelope
from automation_shared.contracts.rules import RuleDefinition, RuleStatus
from automation_shared.delivery import Outgoing
from trigger_detector.domain import flow
from trigger_detector.domain.detection import ActiveRule, decide_on_event

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def rule(**flow_control: Any) -> ActiveRule:
    definition = RuleDefinition.model_validate({
        "name": "r", "triggers": [{"kind": "event", "event_type": "cart.updated"}],
        "actions": [{"type": "add_alert", "title": "t"}], "flow_control": flow_control})
    return ActiveRule("r1", 1, RuleStatus.DEPLOYED, definition)


def event(n: int, subject: str = "c-1", chain: tuple[str, ...] = ()) -> Envelope:
    return Envelope(id=f"e-{n}", type="cart.updated", source="shop", tenantid="t", subject=subject,
                    time=NOW + timedelta(seconds=n), data={}, automationchain=AutomationChain(ids=chain,
                                                                                               hops=len(chain)))


def decisions(active: ActiveRule, events: list[Envelope]) -> list[Outgoing]:
    return [d for e in events for d in decide_on_event([active], e, now=NOW)]


def outcomes(verdict: flow.Verdict) -> list[str]:
    return [d.envelope.data.get("reason", "detected") if d.envelope else "?" for d in verdict.outgoing]


def test_dedupe_collapses_fires_for_one_subject_within_the_window() -> None:
    active = rule(dedupe_window_minutes=30)
    verdict = flow.apply(decisions(active, [event(1), event(2), event(3, "c-2")]), {"r1": active}, [], {}, now=NOW)
    assert outcomes(verdict) == ["detected", "duplicate", "detected"]
    assert [f.subject for f in verdict.fires] == ["c-1", "c-2"]
    earlier = [flow.Fire("r1", "c-1", NOW - timedelta(minutes=31))]  # outside the window: fires again
    assert outcomes(flow.apply(decisions(active, [event(4)]), {"r1": active}, earlier, {}, now=NOW)) == ["detected"]


def test_the_rate_limit_counts_every_subject() -> None:
    active = rule(rate_limit={"max_runs": 2, "per_minutes": 60})
    history = [flow.Fire("r1", "x", NOW - timedelta(minutes=5))]
    verdict = flow.apply(decisions(active, [event(1, "a"), event(2, "b"), event(3, "c")]), {"r1": active}, history,
                         {}, now=NOW)
    assert outcomes(verdict) == ["detected", "rate_limited", "rate_limited"]
    skipped = verdict.outgoing[1].envelope
    assert skipped is not None and "2 runs per 60 minutes" in skipped.data["message"]


def test_a_deleted_subject_is_skipped_from_its_deletion_on() -> None:
    active = rule()
    deleted = {("t", "c-1"): NOW + timedelta(seconds=2)}
    verdict = flow.apply(decisions(active, [event(1), event(3), event(4, "c-2")]), {"r1": active}, [], deleted,
                         now=NOW)
    assert outcomes(verdict) == ["detected", "subject_deleted", "detected"]


def test_a_runaway_rule_is_stopped_and_a_chain_loop_marks_it_failed() -> None:
    active = rule()
    history = [flow.Fire("r1", "c-1", NOW - timedelta(seconds=n)) for n in range(3)]
    verdict = flow.apply(decisions(active, [event(1)]), {"r1": active}, history, {}, now=NOW,
                         limits=flow.Limits(runaway_limit=3, runaway_window=timedelta(minutes=10)))
    assert outcomes(verdict) == ["loop_detected"] and verdict.runaway["r1"][0] == "t"
    looped = flow.apply(decisions(active, [event(2, chain=("r1",))]), {"r1": active}, [], {}, now=NOW)
    assert outcomes(looped) == ["loop_detected"] and "r1" in looped.runaway


def test_the_same_batch_decided_twice_gives_the_same_ids() -> None:
    active = rule(dedupe_window_minutes=30)
    first = flow.apply(decisions(active, [event(1), event(2)]), {"r1": active}, [], {}, now=NOW)
    second = flow.apply(decisions(active, [event(1), event(2)]), {"r1": active}, [], {}, now=NOW)
    assert [d.envelope.id for d in first.outgoing if d.envelope] == [d.envelope.id for d in second.outgoing
                                                                     if d.envelope]


def test_a_defer_rate_limit_holds_detections_until_the_limit_has_room() -> None:
    active = rule(rate_limit={"max_runs": 2, "per_minutes": 60, "policy": "defer"})
    history = [flow.Fire("r1", "x", NOW - timedelta(minutes=50))]
    verdict = flow.apply(decisions(active, [event(1, "a"), event(2, "b"), event(3, "c")]), {"r1": active}, history,
                         {}, now=NOW)
    assert outcomes(verdict) == ["detected"]  # the others are held, not skipped
    assert [until for _, until in verdict.deferred] == [NOW + timedelta(minutes=10), NOW + timedelta(minutes=10)]
    assert flow.next_allowed(active, history, now=NOW) is None
    assert flow.next_allowed(active, [*history, *verdict.fires], now=NOW) == NOW + timedelta(minutes=10)
