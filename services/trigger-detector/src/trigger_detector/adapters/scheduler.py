"""The clock-driven loops of the trigger-detector: schedule slots and behaviour timers.

**Schedules** — every due slot of every deployed schedule fires exactly once.

Each pass claims due ``schedules`` rows with ``FOR UPDATE SKIP LOCKED`` — so replicas split the
due rules and never decide the same one at once — plans each rule's slots (misfire policy),
decides them (``trigger.detected`` / ``trigger.skipped``, ids derived from rule, version and
slot), writes the decisions to the outbox and moves the row to its next slot, all in one
transaction. A crash before the commit leaves the row due for the next pass; after it, the
slot is decided and the row has moved on: no slot is lost or fired twice, however many
detectors run and however often they restart. Clock passed in, like the executor's driver.

**Decided ahead.** Ten thousand rules firing at the top of the minute cannot all be decided in
the second they come due. So a slot is claimed up to ``schedule_lead_seconds`` early and its
decision written to the outbox *held* until the slot (``not_before``): at the slot the relay
only publishes. A pause, edit or delete of the rule withdraws its held slots in the saving
transaction (``repository.save``), so a decision made early never outlives the version that
made it. ``skip_if_running`` rules are decided when due, since the run in progress then decides.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

import sqlalchemy as sa
from automation_shared import metrics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.rules import RuleStatus
from automation_shared.delivery import Outgoing, append_outbox
from automation_shared.logging import get_logger
from automation_shared.service import Runtime
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters import behavior_store, flow_store, match_store, repository
from trigger_detector.adapters.tables import (
    automation_runs,
    automations,
    behavior_states,
    deferred_firings,
    schedules,
)
from trigger_detector.domain import flow
from trigger_detector.domain.behavior import BEHAVIOR_TYPES, BehaviorState, Key, decide_on_timer
from trigger_detector.domain.detection import ActiveRule, Firing, decide_on_schedule
from trigger_detector.domain.rules import schedule_trigger
from trigger_detector.domain.schedule import ScheduleError, plan_slots

log = get_logger(__name__)
MAX_BACKOFF_SECONDS = 30.0
MIN_WAIT_SECONDS = 0.05
FRESH = timedelta(seconds=2)
"""Rows due within this long are "on time": a pass takes them before the older backlog."""


class TimerLoop:
    """A background loop of passes over due rows: a full batch goes straight on, a partial one waits
    ``poll_seconds``, an error backs off (its transaction rolled back: what was due stays due)."""

    name = "timers"
    due_column: ClassVar[sa.Column[Any] | None] = None
    """The indexed due-time column of the loop's table, when a pass can ask when the next row is due."""

    def __init__(self, runtime: Runtime, *, clock: Callable[[], datetime], poll_seconds: float = 1.0,
                 batch: int = 500, fresh: timedelta = FRESH) -> None:
        self._runtime = runtime
        self._clock = clock
        self._poll_seconds = poll_seconds
        self._batch = batch
        self._fresh = fresh

    async def fire_due(self) -> int:
        """One pass; returns how many due rows it claimed."""
        raise NotImplementedError

    async def _claim_due(self, conn: AsyncConnection, table: sa.Table, now: datetime,
                         *order: sa.ColumnElement[Any]) -> tuple[list[Any], dict[str, ActiveRule]]:
        """Up to ``batch`` rows of ``table`` due by ``now``, locked ``FOR UPDATE SKIP LOCKED`` so
        replicas never take the same one, and the rules they belong to that can still fire
        (deployed or paused, not deleted, loadable) by id.

        **On time first, then the backlog.** Rows that came due within ``fresh`` are taken before
        older ones (up to three quarters of the batch; the rest, and whatever the fresh ones leave,
        goes to the oldest of the backlog). After an outage, oldest-first alone made every timer
        due after the restart wait behind the whole backlog (bench (h): a p99 of 15 s for timers
        due while a detector ran); now those stay on time while the backlog drains with the
        capacity left, and a backlog always gets at least a quarter of each pass.

        Each rule is read and loaded once per pass, not once per row: a hundred thousand carts
        abandoned under one rule used to decode and validate its definition a hundred thousand
        times (profiled: a quarter of the detector's CPU while timers caught up).
        """
        def due(*where: sa.ColumnElement[bool], limit: int) -> sa.Select[Any]:
            return (sa.select(table).where(*where).order_by(table.c.due_at, *order).limit(limit)
                    .with_for_update(skip_locked=True))

        recent = now - self._fresh
        rows = list((await conn.execute(due(table.c.due_at <= now, table.c.due_at > recent,
                                            limit=max(1, self._batch * 3 // 4)))).all())
        rows += (await conn.execute(due(table.c.due_at <= recent, limit=self._batch - len(rows)))).all()
        return rows, await _live_rules(conn, {row.automation_id for row in rows})

    def _count(self, outgoing: list[Outgoing]) -> None:
        """Count the pass's decisions (``automation_triggers_total``) by this loop's name and outcome."""
        detected = sum(1 for item in outgoing if item.topic.endswith("detected"))
        service = self._runtime.settings.service_name
        metrics.TRIGGERS.labels(service, self.name, "detected").inc(detected)
        metrics.TRIGGERS.labels(service, self.name, "skipped").inc(len(outgoing) - detected)

    async def run(self) -> None:
        """Pass forever."""
        backoff = self._poll_seconds
        while True:
            try:
                claimed = await self.fire_due()
                backoff = self._poll_seconds
            except Exception as exc:  # noqa: BLE001 - nothing was decided; the next pass retries
                log.exception("timer_pass_failed", loop=self.name, error=repr(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            if claimed < self._batch:
                await asyncio.sleep(await self._until_next_due(backoff))

    async def _until_next_due(self, poll: float) -> float:
        """How long to wait after a pass that was not full: until the next row comes due, at most
        ``poll`` and at least ``MIN_WAIT_SECONDS`` (rows due but held by another replica's pass must
        not make this one spin).

        Waiting the whole poll made timers due at a steady 1,700/s fire 1–2 s late at the median
        (bench (h)): a pass found what was due, then slept a second while the next ones came due.
        """
        if self.due_column is None:
            return poll
        try:
            async with self._runtime.engine.connect() as conn:
                next_due = await conn.scalar(sa.select(sa.func.min(self.due_column)))
        except Exception as exc:  # noqa: BLE001 - only the wait is at stake: poll as before
            log.warning("timer_next_due_failed", loop=self.name, error=repr(exc))
            return poll
        if next_due is None:
            return poll
        return float(min(poll, max((next_due - self._clock()).total_seconds(), MIN_WAIT_SECONDS)))


class ScheduleDriver(TimerLoop):
    """Background loop of the trigger-detector that fires due schedule slots."""

    name = "schedule"

    def __init__(self, runtime: Runtime, *, clock: Callable[[], datetime], poll_seconds: float = 0.5,
                 batch: int = 200) -> None:
        super().__init__(runtime, clock=clock, poll_seconds=poll_seconds, batch=batch)
        self._lead = timedelta(seconds=runtime.settings.schedule_lead_seconds)

    async def fire_due(self) -> int:
        """One pass: decide every due slot of up to ``batch`` rules, and the next slot of rules that
        may be decided ahead and come due within the lead time; returns how many rules it claimed."""
        now = self._clock()
        async with self._runtime.unit_of_work() as conn:
            rows = (await conn.execute(
                sa.select(schedules.c.automation_id, schedules.c.tenant_id, schedules.c.next_due_at,
                          automations.c.version, automations.c.status, automations.c.definition,
                          automations.c.deleted_at)
                .join(automations, automations.c.id == schedules.c.automation_id)
                .where(sa.or_(schedules.c.next_due_at <= now,
                              sa.and_(schedules.c.ahead, schedules.c.next_due_at <= now + self._lead)))
                .order_by(schedules.c.next_due_at)
                .limit(self._batch)
                .with_for_update(of=schedules, skip_locked=True)
            )).all()
            outgoing: list[Outgoing] = []
            moves: list[dict[str, Any]] = []
            for row in rows:
                decided, next_due = await self._fire(conn, row, now)
                outgoing += decided
                moves.append({"id": row.automation_id, "due": next_due})
            stopped = [move["id"] for move in moves if move["due"] is None]
            if stopped:  # a save re-arms a schedule when its rule can fire again
                await conn.execute(schedules.delete().where(schedules.c.automation_id.in_(stopped)))
            moved = [move for move in moves if move["due"] is not None]
            if moved:
                await conn.execute(
                    schedules.update().where(schedules.c.automation_id == sa.bindparam("id"))
                    .values(next_due_at=sa.bindparam("due")), moved)
            await append_outbox(conn, outgoing)
        self._count(outgoing)
        return len(rows)

    async def _fire(self, conn: AsyncConnection, row: Any, now: datetime) -> tuple[list[Outgoing], datetime | None]:
        """Decide one rule's due slots (or its next slot, ahead of time, held until then); its next
        slot, or None when the rule cannot fire (any more)."""
        definition = repository.stored_definition(row.automation_id, row.definition)
        if definition is None:
            return [], None
        trigger = schedule_trigger(definition)
        if trigger is None or row.status != RuleStatus.DEPLOYED.value or row.deleted_at is not None:
            return [], None
        at = max(now, row.next_due_at)  # a slot decided ahead is decided as of its own instant
        try:
            plan = plan_slots(trigger, due=row.next_due_at, now=at)
        except ScheduleError as exc:
            log.error("schedule_unreadable", automation_id=row.automation_id, error=str(exc))
            return [], None
        if plan.dropped:
            log.info("schedule_slots_missed", automation_id=row.automation_id, dropped=plan.dropped,
                     policy=trigger.misfire_policy)
        running = trigger.overlap_policy == "skip_if_running" and bool(await conn.scalar(
            sa.select(sa.exists().where(automation_runs.c.automation_id == row.automation_id,
                                        automation_runs.c.triggered_at.is_not(None),
                                        automation_runs.c.status.is_(None),
                                        automation_runs.c.test_mode.is_not(True)))))
        rule = ActiveRule(automation_id=row.automation_id, version=row.version, status=RuleStatus.DEPLOYED,
                          definition=definition)
        decided = decide_on_schedule(rule, trigger, plan.fire, tenant_id=row.tenant_id,
                                     previous_run_running=running, now=at)
        if at > now:
            decided = [dataclasses.replace(item, not_before=at, held_for=row.automation_id) for item in decided]
        return decided, plan.next_due


class BehaviorTimers(TimerLoop):
    """Background loop firing behaviour timers that came due (abandoned carts, dormant customers, …).

    Like schedules: due ``behavior_states`` rows are claimed with ``FOR UPDATE SKIP LOCKED``, and
    each firing (named by rule, subject and due time) is written to the outbox in the transaction
    that disarms the timer, so a timer fires once, after restarts too.
    """

    name = "behavior"
    due_column = behavior_states.c.due_at

    async def fire_due(self) -> int:
        """One pass: fire up to ``batch`` due timers; returns how many it claimed."""
        now = self._clock()
        async with self._runtime.unit_of_work() as conn:
            rows, rules = await self._claim_due(conn, behavior_states, now)
            firings: list[Firing] = []
            disarmed: dict[Key, BehaviorState] = {}
            for row in rows:
                key = (row.automation_id, row.subject)
                state = behavior_store.to_state(row)
                rule = rules.get(row.automation_id)
                trigger = next((t for t in rule.definition.triggers if isinstance(t, BEHAVIOR_TYPES)), None) \
                    if rule is not None else None
                if rule is None or trigger is None:
                    disarmed[key] = BehaviorState(state.version)
                    continue
                disarmed[key], fired = decide_on_timer(rule, trigger, state, tenant_id=row.tenant_id,
                                                       subject=row.subject, now=now)
                if fired is not None:
                    firings.append(fired)
            outgoing = await match_store.decide_all(conn, firings, now=now)
            await behavior_store.save(conn, disarmed, {(r.automation_id, r.subject): r.tenant_id for r in rows},
                                      now=now)
            await append_outbox(conn, outgoing)
        self._count(outgoing)
        return len(rows)


async def _live_rules(conn: AsyncConnection, automation_ids: set[str]) -> dict[str, ActiveRule]:
    """The rules of ``automation_ids`` that can still fire (deployed or paused, not deleted,
    loadable), by id, each definition loaded once."""
    if not automation_ids:
        return {}
    rows = await conn.execute(
        sa.select(automations.c.id, automations.c.version, automations.c.status, automations.c.definition)
        .where(automations.c.id.in_(sorted(automation_ids)), automations.c.deleted_at.is_(None),
               automations.c.status.in_((RuleStatus.DEPLOYED.value, RuleStatus.PAUSED.value))))
    rules = {}
    for row in rows:
        definition = repository.stored_definition(row.id, row.definition)
        if definition is not None:
            rules[row.id] = ActiveRule(automation_id=row.id, version=row.version, status=RuleStatus(row.status),
                                       definition=definition)
    return rules


class DeferredFirings(TimerLoop):
    """Background loop releasing detections a ``defer`` rate limit held back, as the limit allows.

    Due rows are claimed with ``FOR UPDATE SKIP LOCKED``; each is released (its stored
    ``trigger.detected``, same run id, to the outbox, and a fire recorded) when the rule's rate
    limit has room, else moved to when it will — in one transaction, so none is lost or doubled.
    A rule no longer deployed drops what it held (logged).
    """

    name = "deferred"
    due_column = deferred_firings.c.due_at

    async def fire_due(self) -> int:
        """One pass; returns how many held detections it looked at."""
        now = self._clock()
        async with self._runtime.unit_of_work() as conn:
            rows, rules = await self._claim_due(conn, deferred_firings, now, deferred_firings.c.id)
            live = {automation_id: rule for automation_id, rule in rules.items() if rule.status is RuleStatus.DEPLOYED}
            fires = await flow_store.load_fires(
                conn, {}, {a: w for a, r in live.items() if (w := flow.rule_window(r)) is not None}, now=now)
            released: list[Outgoing] = []
            new_fires: list[flow.Fire] = []
            for row in rows:
                rule = live.get(row.automation_id)
                where = deferred_firings.c.id == row.id
                if rule is None:
                    log.info("deferred_firing_dropped", automation_id=row.automation_id, reason="rule not deployed")
                    await conn.execute(deferred_firings.delete().where(where))
                elif (until := flow.next_allowed(rule, fires, now=now)) is not None:
                    await conn.execute(deferred_firings.update().where(where).values(due_at=until))
                else:
                    fire = flow.Fire(row.automation_id, row.subject, now)
                    fires.append(fire)
                    new_fires.append(fire)
                    released.append(Outgoing(row.topic, row.key, Envelope.model_validate_json(row.payload)))
                    await conn.execute(deferred_firings.delete().where(where))
            await flow_store.record_fires(conn, new_fires, now=now)
            await append_outbox(conn, released)
        self._count(released)
        return len(rows)
