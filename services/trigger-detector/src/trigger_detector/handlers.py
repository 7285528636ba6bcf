"""Kafka subscribers of the trigger-detector."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from automation_shared import metrics, topics
from automation_shared.contracts.envelope import Envelope
from automation_shared.contracts.events import RunFinished, TriggerDetected
from automation_shared.contracts.jsonsafe import MAX_INGRESS_DEPTH
from automation_shared.delivery import Outgoing, append_outbox
from automation_shared.inbox import inbox_key
from automation_shared.logging import get_logger
from automation_shared.messaging import AfterCommit, Consumed, Delivery, Subscription, part_of, payload_of
from automation_shared.service import Runtime
from automation_shared.system import new_uuid, utcnow
from sqlalchemy.ext.asyncio import AsyncConnection

from trigger_detector.adapters import (
    behavior_store,
    flow_store,
    match_store,
    profile_store,
    repository,
    run_stats,
    threshold_store,
)
from trigger_detector.adapters.rule_cache import RuleCache
from trigger_detector.domain import flow
from trigger_detector.domain import rules as rules_domain
from trigger_detector.domain.behavior import decide_on_observations, observations_in
from trigger_detector.domain.detection import event_firings
from trigger_detector.domain.profiles import fold, view
from trigger_detector.domain.threshold import decide_on_samples, samples_in

CONSUMER = "event-detector"
log = get_logger(__name__)


def with_event_time(envelope: Envelope, delivery: Delivery) -> Envelope:
    """An event without ``time`` happened when Kafka received it."""
    if envelope.time is None:
        return envelope.model_copy(update={"time": delivery.received_at})
    return envelope


def register(runtime: Runtime, rules: RuleCache, *, clock: Callable[[], datetime] = utcnow,
             new_id: Callable[[], str] = new_uuid) -> None:
    """Subscribe the detection handler to ``domain.events``."""
    service = runtime.settings.service_name
    limits = flow.Limits(runaway_limit=runtime.settings.runaway_fire_limit,
                         runaway_window=timedelta(minutes=runtime.settings.runaway_window_minutes))

    async def control_flow(conn: AsyncConnection, events: Sequence[Envelope], decisions: list[Outgoing], *,
                           now: datetime) -> list[Outgoing]:
        """Dedupe, rate limits, deleted subjects and runaway rules over the batch's decisions."""
        await flow_store.record_deletions(conn, [(e.tenantid, e.subject, e.time or now) for e in events
                                                 if e.type == flow.SUBJECT_DELETED_EVENT and e.subject])
        detected = [d.envelope for d in decisions if d.topic == topics.TRIGGER_DETECTED and d.envelope is not None]
        live = {e.data["automation_id"]: rule for e in detected
                if (rule := rules.rule(e.tenantid, e.data["automation_id"])) is not None}
        history = await flow_store.load_fires(
            conn, {(a, e.subject or ""): flow.subject_window(live[a], limits) for e in detected
                   if (a := e.data["automation_id"]) in live},
            {a: w for a, r in live.items() if (w := flow.rule_window(r)) is not None}, now=now)
        deleted = await flow_store.load_deleted(conn, [(e.tenantid, e.subject) for e in detected if e.subject])
        verdict = flow.apply(decisions, live, history, deleted, now=now, limits=limits)
        await flow_store.record_fires(conn, verdict.fires, now=now)
        await flow_store.defer(conn, verdict.deferred)
        for automation_id, (tenant_id, why) in verdict.runaway.items():
            await stop_runaway_rule(conn, tenant_id, automation_id, why, now=now)
        return verdict.outgoing

    async def stop_runaway_rule(conn: AsyncConnection, tenant_id: str, automation_id: str, why: str, *,
                                now: datetime) -> None:
        """Set a rule that feeds itself to ``failed`` (a new version, by ``system``) and alert, once."""
        current = await repository.get(conn, tenant_id, automation_id, for_update=True)
        change = rules_domain.stop_as_failed(current, why, now=now, new_id=new_id) if current is not None else None
        if change is not None:
            await repository.save(conn, change, now=now)
            log.warning("rule_failed_runaway", automation_id=automation_id, tenant_id=tenant_id, reason=why)

    async def detect_event_triggers(conn: AsyncConnection, batch: Sequence[Consumed[Envelope]]) -> AfterCommit:
        """Evaluate the tenants' rules against a batch of domain events; emit detected/skipped."""
        await rules.refresh(conn)
        now = clock()
        events = [consumed.payload for consumed in batch]
        profiled = [(e.tenantid, e.subject) for e in events if e.subject and rules.reads_profiles(e.tenantid)]
        seen, profiles = fold(events, await profile_store.load(conn, profiled), keep=rules.reads_profiles)
        await profile_store.save(conn, profiles, now=now)
        known = {inbox_key(e): view(profile, e.subject) for e, profile in zip(events, seen, strict=True) if profile}
        firings = [firing for e in events for firing in event_firings(rules.active_rules(e.tenantid), e, now=now,
                                                                      known=known.get(inbox_key(e)))]
        samples = [sample for e in events for sample in samples_in(rules.active_rules(e.tenantid), e)]
        if samples:
            states, crossings = decide_on_samples(
                samples, await threshold_store.load(conn, [s.key for s in samples]), now=now, known=known)
            await threshold_store.save(conn, states, now=now)
            firings += crossings
        observations = [item for e in events for item in observations_in(rules.active_rules(e.tenantid), e)]
        if observations:
            moved, completed = decide_on_observations(
                observations, await behavior_store.load(conn, [o.key for o in observations]), now=now)
            await behavior_store.save(conn, moved, {o.key: o.event.tenantid for o in observations}, now=now)
            firings += completed
        outgoing = await match_store.decide_all(conn, firings, now=now)
        outgoing = await control_flow(conn, events, outgoing, now=now)
        await append_outbox(conn, outgoing)

        def after() -> None:
            counted = Counter((item.envelope.data.get("trigger_kind", "event") if item.envelope else "event",
                               "detected" if item.topic == topics.TRIGGER_DETECTED else "skipped")
                              for item in outgoing)
            for (kind, outcome), count in counted.items():
                metrics.TRIGGERS.labels(service, kind, outcome).inc(count)
            if outgoing:
                runtime.relay.notify()

        return after

    runtime.subscribe(Subscription(topic=topics.DOMAIN_EVENTS, consumer=CONSUMER, decode=with_event_time,
                                   handler=detect_event_triggers,
                                   description="Evaluate the tenants' rules against domain events.",
                                   # the same bound as HTTP ingest: what upstream systems send may nest as
                                   # deep whichever door it comes in by, and the events derived from it
                                   # (one or two levels deeper) still pass every internal consumer
                                   max_depth=MAX_INGRESS_DEPTH))


STATS_CONSUMERS = ("rule-stats-triggered", "rule-stats-finished")


def register_stats(runtime: Runtime) -> None:
    """Keep each rule's execution statistics from ``trigger.detected`` and ``run.finished``."""

    async def count_detected_runs(conn: AsyncConnection, batch: Sequence[Consumed[run_stats.TriggeredRun]]) -> None:
        """Record that each run was triggered (and whether it is a test run)."""
        await run_stats.record_triggered(conn, [
            run_stats.Triggered(item.envelope.tenantid, item.envelope.time or item.delivery.received_at, item.payload)
            for item in batch])

    async def count_finished_runs(conn: AsyncConnection, batch: Sequence[Consumed[RunFinished]]) -> None:
        """Record each run's outcome and duration."""
        await run_stats.record_finished(conn, [
            run_stats.Finished(item.envelope.tenantid, item.envelope.time or item.delivery.received_at, item.payload)
            for item in batch])

    runtime.subscribe(Subscription(topic=topics.TRIGGER_DETECTED, consumer=STATS_CONSUMERS[0],
                                   decode=part_of(TriggerDetected, run_stats.TriggeredRun),
                                   handler=count_detected_runs, idempotent=True,
                                   description="Count each rule's runs for the rules API statistics."))
    runtime.subscribe(Subscription(topic=topics.RUN_FINISHED, consumer=STATS_CONSUMERS[1],
                                   decode=payload_of(RunFinished),
                                   handler=count_finished_runs, idempotent=True,
                                   description="Record each rule's run outcomes for the rules API statistics."))
