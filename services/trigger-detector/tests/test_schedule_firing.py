"""Schedule firing: slot plans under each misfire policy, arming on rule changes, slot decisions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from automation_shared.contracts.events import SkipReason, TriggerKind
from automation_shared.contracts.rules import RuleDefinition, RuleStatus, ScheduleTrigger
from hypothesis import given, settings
from hypothesis import strategies as st
from trigger_detector.domain import rules
from trigger_detector.domain.detection import ActiveRule, decide_on_schedule
from trigger_detector.domain.schedule import next_fire_times, plan_slots

NOW = datetime(2026, 11, 23, 12, 0, 30, tzinfo=UTC)


def every_minute(**policy: Any) -> ScheduleTrigger:
    return ScheduleTrigger.model_validate({"kind": "schedule", "cron": "* * * * *", **policy})


def test_an_on_time_slot_fires_and_the_row_moves_to_the_next() -> None:
    plan = plan_slots(every_minute(), due=NOW.replace(second=0), now=NOW)
    assert plan.fire == (NOW.replace(second=0),) and plan.dropped == 0
    assert plan.next_due == NOW.replace(second=0) + timedelta(minutes=1)


def test_nothing_is_due_before_the_slot() -> None:
    plan = plan_slots(every_minute(), due=NOW + timedelta(seconds=30), now=NOW)
    assert plan.fire == () and plan.next_due == NOW.replace(second=0) + timedelta(minutes=1)


DOWNTIME_DUE = NOW.replace(second=0) - timedelta(minutes=10)  # 10 missed slots, then the on-time one


def test_misfire_skip_fires_only_what_is_on_time() -> None:
    plan = plan_slots(every_minute(misfire_policy="skip"), due=DOWNTIME_DUE, now=NOW)
    assert plan.fire == (NOW.replace(second=0),) and plan.dropped == 10


def test_misfire_fire_once_fires_the_latest_missed_slot_once_when_nothing_is_on_time() -> None:
    hourly = ScheduleTrigger.model_validate({"kind": "schedule", "cron": "0 * * * *"})
    now = datetime(2026, 11, 23, 12, 5, tzinfo=UTC)  # the 12:00 slot is five minutes late: missed too
    plan = plan_slots(hourly, due=datetime(2026, 11, 23, 2, tzinfo=UTC), now=now)
    assert plan.fire == (datetime(2026, 11, 23, 12, tzinfo=UTC),) and plan.dropped == 10
    on_time = plan_slots(every_minute(), due=DOWNTIME_DUE, now=NOW)
    assert on_time.fire == (NOW.replace(second=0),) and on_time.dropped == 10


def test_misfire_fire_all_replays_at_most_max_catch_up() -> None:
    plan = plan_slots(every_minute(misfire_policy="fire_all", max_catch_up=4), due=DOWNTIME_DUE, now=NOW)
    assert len(plan.fire) == 5 and plan.dropped == 6
    assert list(plan.fire) == sorted(plan.fire) and plan.fire[-1] == NOW.replace(second=0)
    everything = plan_slots(every_minute(misfire_policy="fire_all"), due=DOWNTIME_DUE, now=NOW)
    assert len(everything.fire) == 11 and everything.dropped == 0


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=7 * 24 * 60), st.integers(min_value=1, max_value=40),
       st.integers(min_value=1, max_value=150),  # at most 6,000 minutes: under 1,000 slots of */7
       st.sampled_from(["0 * * * *", "*/7 * * * *", "30 2 * * *", "30 1 * * *"]),
       st.sampled_from(["UTC", "America/New_York", "Europe/London", "Australia/Lord_Howe"]))
def test_a_polling_loop_fires_every_slot_exactly_once(offset: int, passes: int, pace: int, cron: str,
                                                      zone: str) -> None:
    """Whatever the pace of the passes (on time or late, across DST changes), with ``fire_all``
    every slot fires once, in order, and nothing else fires."""
    trigger = ScheduleTrigger.model_validate({"kind": "schedule", "cron": cron, "timezone": zone,
                                              "misfire_policy": "fire_all"})
    start = datetime(2026, 3, 7, tzinfo=UTC) + timedelta(minutes=offset)  # around the spring changes
    due = next_fire_times(trigger, start, 1)[0]
    fired: list[datetime] = []
    now = start
    for _ in range(passes):
        now += timedelta(minutes=pace)
        plan = plan_slots(trigger, due=due, now=now)
        fired.extend(plan.fire)
        assert plan.next_due is not None and plan.next_due > now
        due = plan.next_due
    expected = [slot for slot in next_fire_times(trigger, start, 1000) if slot <= now]
    assert fired == expected


def ids() -> Any:
    counter = itertools.count(1)
    return lambda: f"id-{next(counter)}"


SCHEDULED: dict[str, Any] = {"name": "weekly", "triggers": [{"kind": "schedule", "cron": "0 9 * * 1"}],
                             "actions": [{"type": "add_alert", "title": "t"}]}


def scheduled(status: RuleStatus) -> rules.Automation:
    return rules.create(RuleDefinition.model_validate(SCHEDULED), status, automation_id="a", tenant_id="t",
                        user_id="u", now=NOW, new_id=ids()).automation


def test_deploying_arms_from_now_and_pausing_or_deleting_stops_at_once() -> None:
    deployed = rules.change_status(scheduled(RuleStatus.DRAFT), RuleStatus.DEPLOYED, user_id="u", now=NOW,
                                   new_id=ids())
    assert deployed is not None and deployed.schedule == rules.Arm(datetime(2026, 11, 30, 9, tzinfo=UTC), ahead=True)
    paused = rules.change_status(deployed.automation, RuleStatus.PAUSED, user_id="u", now=NOW, new_id=ids())
    assert paused is not None and paused.schedule == rules.Arm(None)
    later = NOW + timedelta(days=14)
    redeployed = rules.change_status(paused.automation, RuleStatus.DEPLOYED, user_id="u", now=later, new_id=ids())
    assert redeployed is not None
    assert redeployed.schedule == rules.Arm(datetime(2026, 12, 14, 9, tzinfo=UTC), ahead=True)
    assert rules.delete(redeployed.automation, user_id="u", now=later, new_id=ids()).schedule == rules.Arm(None)


def test_an_edit_keeps_an_unchanged_schedule_and_rearms_a_changed_one() -> None:
    deployed = scheduled(RuleStatus.DEPLOYED)
    renamed = rules.revise(deployed, RuleDefinition.model_validate({**SCHEDULED, "name": "x"}), user_id="u",
                           now=NOW, new_id=ids())
    assert renamed.schedule is None
    moved = rules.revise(deployed, RuleDefinition.model_validate(
        {**SCHEDULED, "triggers": [{"kind": "schedule", "cron": "0 10 * * *"}]}), user_id="u", now=NOW, new_id=ids())
    assert moved.schedule == rules.Arm(datetime(2026, 11, 24, 10, tzinfo=UTC), ahead=True)
    guarded = rules.revise(deployed, RuleDefinition.model_validate(
        {**SCHEDULED, "triggers": [{"kind": "schedule", "cron": "0 9 * * 1", "overlap_policy": "skip_if_running"}]}),
        user_id="u", now=NOW, new_id=ids())
    assert guarded.schedule is not None and not guarded.schedule.ahead  # decided when due: a run may be going


def test_a_slot_names_one_run_and_overlap_skips_while_running() -> None:
    definition = RuleDefinition.model_validate(SCHEDULED)
    rule = ActiveRule("a", 3, RuleStatus.DEPLOYED, definition)
    slot = datetime(2026, 11, 23, 9, tzinfo=UTC)
    trigger = rules.schedule_trigger(definition)
    assert trigger is not None
    first = decide_on_schedule(rule, trigger, [slot], tenant_id="t", previous_run_running=False, now=NOW)
    again = decide_on_schedule(rule, trigger, [slot], tenant_id="t", previous_run_running=False, now=NOW)
    assert [o.key for o in first] == [o.key for o in again] and first[0].topic.endswith("detected")
    envelope = first[0].envelope
    assert envelope is not None and envelope.data["trigger_kind"] == TriggerKind.SCHEDULE.value
    assert envelope.data["context"]["schedule"]["slot"] == slot.isoformat()
    guarded = trigger.model_copy(update={"overlap_policy": "skip_if_running"})
    skipped = decide_on_schedule(rule, guarded, [slot], tenant_id="t", previous_run_running=True, now=NOW)
    assert skipped[0].topic.endswith("skipped")
    assert skipped[0].envelope is not None and skipped[0].envelope.data["reason"] == SkipReason.STILL_RUNNING.value
