"""Kafka subscribers of the timeline projector: one consumer group per projected topic, plus
``automation.rules`` for the rule facts the entry detail shows.

Each handler receives a partition's batch in one transaction (inbox already claimed by the
consumer), groups its events by entry, locks those entries with one statement, folds each
entry's events with the pure projection and saves the outcomes with one insert and one update,
then adds the batch's aggregate delta with one upsert per aggregate table and appends the entries
it changed to the change log the live stream reads (one insert).
A duplicate is a no-op; events of one run arrive on different topics in any order and the
projection is order-independent, so six consumers may project onto the same entries concurrently.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import partial

from automation_shared import topics
from automation_shared.contracts.events import AutomationSnapshot, Payload
from automation_shared.errors import PoisonMessage
from automation_shared.messaging import BatchHandler, Consumed, Subscription, payload_of
from automation_shared.service import Runtime
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline_projector.adapters import repository
from timeline_projector.domain.automations import automation_row
from timeline_projector.domain.projection import (
    PROJECTED_TYPES,
    EventMeta,
    ProjectedEvent,
    ProjectionConflict,
    TimelineEntry,
    entry_id_of,
    project_all,
)

# logical topic -> consumer name (one consumer group and one inbox namespace each)
SUBSCRIPTIONS: dict[str, str] = {
    topics.TRIGGER_DETECTED: "timeline-trigger-detected",
    topics.TRIGGER_SKIPPED: "timeline-trigger-skipped",
    topics.RUN_STARTED: "timeline-run-started",
    topics.ACTION_COMPLETED: "timeline-action-completed",
    topics.ACTION_SCHEDULED: "timeline-action-scheduled",
    topics.RUN_FINISHED: "timeline-run-finished",
    topics.APPROVAL_REQUESTED: "timeline-approval-requested",
    topics.APPROVAL_DECIDED: "timeline-approval-decided",
}
RULES_CONSUMER = "timeline-automation-rules"


class EntryConflict(PoisonMessage):
    """The event names an entry of another tenant or kind; retrying cannot help."""


def register(runtime: Runtime) -> None:
    """Subscribe one projecting handler per topic in :data:`SUBSCRIPTIONS`."""
    for topic, consumer in SUBSCRIPTIONS.items():
        runtime.subscribe(Subscription(topic=topic, consumer=consumer, decode=payload_of(PROJECTED_TYPES[topic]),
                                       handler=projecting_handler(topic),
                                       description=f"Project `{topic}` events onto the tenant's timeline."))
    runtime.subscribe(Subscription(topic=topics.AUTOMATION_RULES, consumer=RULES_CONSUMER,
                                   decode=payload_of(AutomationSnapshot), handler=keep_newest_snapshots,
                                   idempotent=True,
                                   description="Keep each rule's newest name, description, category and status."))


async def keep_newest_snapshots(conn: AsyncConnection, batch: Sequence[Consumed[AutomationSnapshot]]) -> None:
    """Save each rule's newest snapshot; an older or repeated one changes nothing (hence idempotent)."""
    await repository.save_automations(conn, [
        automation_row(item.payload, tenant_id=item.envelope.tenantid,
                       at=item.envelope.time or item.delivery.received_at).as_row()
        for item in batch
    ])


def projecting_handler(topic: str) -> BatchHandler[Payload]:
    """The handler that projects a batch of ``topic`` events onto their entries, in bulk."""

    async def project_events(conn: AsyncConnection, batch: Sequence[Consumed[Payload]]) -> None:
        await project_batch(conn, batch)

    project_events.__name__ = f"project_{topic.replace('.', '_')}"
    return project_events


async def project_batch(conn: AsyncConnection, batch: Sequence[Consumed[Payload]]) -> dict[str, TimelineEntry]:
    """Project every event of ``batch`` onto its entry with a constant number of statements.

    Events are grouped by entry and each entry's events folded with the pure projection (it
    is order-independent and idempotent, so folding a group equals applying its events one by
    one in any order). One conflicting event (an entry of another tenant or kind) fails the
    whole batch with :class:`EntryConflict` before anything is written; the consumer then
    replays the batch one record per transaction, so only that record is dead-lettered.
    The entries it creates or changes go to the change log the live stream reads.

    Raises:
        EntryConflict: an event names an entry of another tenant or kind.
    """
    try:
        return await repository.apply_to_entries(conn, {
            entry_id: partial(project_all, events=events) for entry_id, events in group_by_entry(batch).items()
        }, log_changes=True)
    except ProjectionConflict as exc:
        raise EntryConflict(str(exc)) from exc


def group_by_entry(batch: Sequence[Consumed[Payload]]) -> dict[str, list[ProjectedEvent]]:
    """The events of ``batch`` grouped by the entry they belong to, in batch order within a group."""
    groups: dict[str, list[ProjectedEvent]] = defaultdict(list)
    for item in batch:
        meta = EventMeta.from_envelope(item.envelope, received_at=item.delivery.received_at)
        groups[entry_id_of(item.payload)].append((item.envelope.type, item.payload, meta))
    return groups
