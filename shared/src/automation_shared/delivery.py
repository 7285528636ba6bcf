"""The outbox (atomic publishing) and its relay.

``append_outbox`` runs on the caller's connection, inside the caller's transaction: a handler's
state changes, its inbox rows (see ``inbox``) and its outbox rows commit together or not at all. The
:class:`OutboxRelay` later sends committed outbox rows to Kafka (see its docstring for the
ordering, parking and backoff rules).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerClosed,
    ProducerFenced,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnknownProducerId,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_shared import metrics
from automation_shared.contracts.envelope import Envelope
from automation_shared.errors import AutomationError, OversizedOutgoing
from automation_shared.failures import is_transient
from automation_shared.logging import get_logger
from automation_shared.plumbing_tables import outbox
from automation_shared.system import utcnow

log = get_logger(__name__)

PURGE_INTERVAL_SECONDS = 600.0


@dataclass(frozen=True)
class Outgoing:
    """An event to publish: logical topic, Kafka key and envelope.

    ``envelope=None`` is a *tombstone*: a record with this key and no value, which tells a
    compacted topic (``automation.rules``) to drop the key's history; consumers skip it.

    ``not_before`` holds an event decided ahead of time (a schedule slot) back until that
    instant; until then a change to ``held_for`` may withdraw it (:func:`withdraw_held`).
    """

    topic: str
    key: str | None
    envelope: Envelope | None
    not_before: datetime | None = None
    held_for: str | None = None

    @classmethod
    def tombstone(cls, topic: str, key: str) -> Outgoing:
        """The record that deletes ``key`` from compacted ``topic``."""
        return cls(topic=topic, key=key, envelope=None)


TOMBSTONE_TYPE = "tombstone"
"""``event_type`` of a tombstone's outbox row (its payload is NULL)."""


# The broker's default ``message.max.bytes`` (1 MiB) less headroom for key, headers and batch
# framing. Ingest accepts events up to ``AUTOMATION_MAX_MESSAGE_BYTES`` (1,000,000 by default),
# so a derived event that carries the data once still fits; one that would not is refused here.
MAX_RECORD_BYTES = 1_044_480


async def append_outbox(conn: AsyncConnection, items: Iterable[Outgoing]) -> int:
    """Add events to the outbox in the caller's transaction; returns how many.

    Raises:
        OversizedOutgoing: an event would be a record Kafka refuses. Nothing is written (the
            caller's transaction rolls back), and a consumer dead-letters the message that
            caused it with this reason, instead of leaving a row that can never be published.
    """
    rows: list[dict[str, Any]] = []
    for item in items:
        if item.envelope is None:
            rows.append({"topic": item.topic, "key": item.key, "event_type": TOMBSTONE_TYPE, "payload": None,
                         "not_before": None, "held_for": None})
            continue
        payload = item.envelope.to_bytes()
        if len(payload) > MAX_RECORD_BYTES:
            raise OversizedOutgoing(
                f"{item.envelope.type} for {item.key or 'no key'} would be {len(payload)} bytes, "
                f"over the {MAX_RECORD_BYTES}-byte record limit"
            )
        rows.append({"topic": item.topic, "key": item.key, "event_type": item.envelope.type, "payload": payload,
                     "not_before": item.not_before, "held_for": item.held_for})
    if rows:
        await conn.execute(outbox.insert(), rows)
    return len(rows)


async def withdraw_held(conn: AsyncConnection, held_for: str, *, now: datetime) -> list[datetime]:
    """Delete the rows held for ``held_for`` that are not due yet; returns their ``not_before``.

    Runs in the caller's transaction (a rule's pause or edit), so a slot decided ahead is either
    withdrawn with the change or already due — never published after the change took effect.
    The relay only selects due rows, so it is never sending a row this deletes.
    """
    result = await conn.execute(
        outbox.delete()
        .where(outbox.c.held_for == held_for, outbox.c.published_at.is_(None), outbox.c.not_before > now)
        .returning(outbox.c.not_before)
    )
    return sorted(result.scalars().all())


@dataclass(frozen=True)
class OutboxRow:
    """One unpublished outbox row."""

    id: int
    topic: str
    key: str | None
    payload: bytes | None
    """None for a tombstone."""


def publish_order(rows: Iterable[OutboxRow], limit: int) -> list[OutboxRow]:
    """Which pending rows to publish next, in order.

    Rows are chosen by *being unpublished*, never by an id high-water mark: a transaction that
    committed a lower id after a higher one was published is still picked up on the next pass.
    Within a pass rows go out in id order, which keeps per-key order for one producer.
    """
    return sorted(rows, key=lambda row: row.id)[:limit]


SendMany = Callable[[Sequence[OutboxRow]], Awaitable[Sequence[BaseException | None]]]
"""Sends every row (logical topic; the implementation maps it to the physical name) and returns,
per row and in the same order, ``None`` when Kafka acknowledged it or the exception it raised.

An implementation must hand the rows to one idempotent producer in the given order (that is
what keeps each key's order) and, after any non-retriable Kafka error in its results, replace
that producer before the next call: aiokafka does not rewind its idempotence sequence numbers
after the broker refuses a batch, so every later record of that partition would fail with
``OutOfOrderSequenceNumber`` for as long as the producer lives.
"""

# Two-key advisory lock space: (RELAY_LOCK_CLASS, oid of this schema's outbox table). The
# single-key space (e.g. ``db.MIGRATION_LOCK_ID``) does not overlap with it.
RELAY_LOCK_CLASS = 7_201_200
LAST_ERROR_CHARS = 2_000
_ASYNC_COMMIT = sa.text("SET LOCAL synchronous_commit TO off")
STATS_INTERVAL_SECONDS = 15.0
BURST_FACTOR = 8
"""After full passes the relay doubles its row limit, up to this many times ``batch_size``."""
MAX_PASS_BYTES = 16 * 1024 * 1024
"""Payload bytes one pass holds in memory at most (a row of any size still goes alone)."""

# Failures that say nothing about the row, beyond the outages ``failures.is_transient`` names
# (which include KafkaTimeoutError, although aiokafka marks it not retriable): any OS-level
# failure, the producer's own state being broken (after a broker refusal aiokafka's idempotent
# producer does not rewind its sequence numbers, so *every later record of that partition* fails
# with OutOfOrderSequenceNumber until the producer is replaced), or wrong credentials/ACLs.
# Counting these as attempts would park innocent rows; they leave the row pending and make the
# relay back off instead.
_NOT_THE_ROWS_FAULT: tuple[type[BaseException], ...] = (
    OSError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    UnknownProducerId,
    ProducerClosed,
    TopicAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


def is_refusal(error: BaseException) -> bool:
    """True when Kafka (or serialising) refused *this row*: retrying it unchanged cannot succeed.

    Refusals are non-retriable Kafka errors that name a record (``MessageSizeTooLargeError``,
    ``CorruptRecordException`` for a null key on a compacted topic, …) and non-Kafka exceptions
    raised while serialising. An outage (:func:`~automation_shared.failures.is_transient`),
    everything in ``_NOT_THE_ROWS_FAULT``, the bare ``KafkaError`` aiokafka raises when its
    sender task dies, and ``BaseException``s such as ``CancelledError`` are not refusals.
    """
    if not isinstance(error, Exception) or isinstance(error, _NOT_THE_ROWS_FAULT) or is_transient(error):
        return False
    if type(error) is KafkaError:
        return False
    return not bool(getattr(error, "retriable", False))


def describe_error(error: BaseException) -> str:
    """``Type: message``, bounded, as stored in ``outbox.last_error``."""
    return f"{type(error).__name__}: {error}"[:LAST_ERROR_CHARS]


class SendResultMismatch(AutomationError):
    """``send_many`` returned a different number of results than rows it was given (a bug)."""


@dataclass(frozen=True)
class RelayPass:
    """What one relay pass did.

    ``refused`` rows had an attempt counted (``parked`` of them reached ``max_attempts``);
    ``deferred`` rows failed for a reason that is not theirs and stay pending uncounted;
    ``standby`` means another relay of this schema held the lock and nothing was sent.
    """

    selected: int = 0
    published: int = 0
    refused: int = 0
    parked: int = 0
    deferred: int = 0
    standby: bool = False
    full: bool = False
    """The pass stopped at its row or byte limit: more rows may be due behind it."""
    next_held: datetime | None = None
    """When a batch was not full: the instant the earliest row still held comes due (None: none)."""

    @property
    def failed(self) -> bool:
        """Whether a row was not acknowledged: the relay loop then backs off."""
        return self.refused > 0 or self.deferred > 0


@dataclass(frozen=True)
class PendingStats:
    """The outbox's health: rows waiting, how long the oldest waits, rows parked for an operator."""

    backlog: int
    oldest_age_seconds: float
    parked: int


_PENDING = sa.and_(outbox.c.published_at.is_(None), outbox.c.parked_at.is_(None))
_DUE = sa.or_(outbox.c.not_before.is_(None), outbox.c.not_before <= sa.bindparam("now"))

_RUNNING_BYTES = sa.func.sum(sa.func.coalesce(sa.func.octet_length(outbox.c.payload), 0)).over(
    order_by=outbox.c.id)
_DUE_IN_ORDER = (
    sa.select(outbox.c.id, outbox.c.topic, outbox.c.key, outbox.c.payload, _RUNNING_BYTES.label("running"))
    .where(_PENDING, _DUE).order_by(outbox.c.id).limit(sa.bindparam("limit")).subquery()
)
_SELECT_DUE = (
    # up to :limit due rows in id order, cut where the payloads before a row already reach
    # :max_bytes (the first row always goes, whatever its size)
    sa.select(_DUE_IN_ORDER)
    .where(_DUE_IN_ORDER.c.running - sa.func.coalesce(sa.func.octet_length(_DUE_IN_ORDER.c.payload), 0)
           < sa.bindparam("max_bytes"))
    .order_by(_DUE_IN_ORDER.c.id)
)

_NEXT_HELD = sa.select(sa.func.min(outbox.c.not_before)).where(_PENDING, outbox.c.not_before > sa.bindparam("now"))

_TRY_RELAY_LOCK = sa.text(
    f"SELECT pg_try_advisory_xact_lock({RELAY_LOCK_CLASS}, CAST(CAST('{outbox.name}'::regclass AS oid) AS integer))"
)

_MARK_PUBLISHED = (
    outbox.update()
    .where(outbox.c.id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.BigInteger))))
    .values(published_at=sa.func.now())
)

_RECORD_REFUSALS = sa.text(
    """
    UPDATE outbox AS o
    SET attempts = o.attempts + 1,
        last_error = f.error,
        parked_at = CASE WHEN o.attempts + 1 >= :max_attempts THEN now() END
    FROM unnest(CAST(:ids AS bigint[]), CAST(:errors AS text[])) AS f(id, error)
    WHERE o.id = f.id
    RETURNING o.id, o.topic, o.event_type, o.attempts, o.parked_at IS NOT NULL AS parked
    """
).bindparams(
    sa.bindparam("ids", type_=ARRAY(sa.BigInteger)),
    sa.bindparam("errors", type_=ARRAY(sa.Text)),
    sa.bindparam("max_attempts", type_=sa.Integer),
)

_PENDING_STATS = sa.select(
    sa.func.count(),
    sa.func.coalesce(sa.extract("epoch", sa.bindparam("now") - sa.func.min(
        sa.func.coalesce(outbox.c.not_before, outbox.c.created_at))), 0),
    sa.select(sa.func.count())
    .select_from(outbox)
    .where(outbox.c.published_at.is_(None), outbox.c.parked_at.is_not(None))
    .scalar_subquery(),
).where(_PENDING, _DUE)


class OutboxRelay:
    """Publishes committed outbox rows to Kafka in batches and marks them published.

    **One publisher per schema.** Each pass runs in one transaction that first takes
    ``pg_try_advisory_xact_lock(RELAY_LOCK_CLASS, <oid of this schema's outbox table>)``. The
    relay that gets it selects up to ``batch_size`` pending rows in id order, hands them all to
    ``send_many`` (which awaits the acknowledgements together), marks the acked ones published
    with one ``UPDATE … WHERE id = ANY(:ids)`` and commits, which releases the lock. A replica
    that does not get the lock sends nothing and tries again after its poll interval: replicas
    are hot standbys. Why not ``FOR UPDATE SKIP LOCKED`` as before: it let replica B publish a
    key's later rows while replica A still held its earlier ones, and on the compacted
    ``automation.rules`` topic the older version could then become the kept value. With one
    producer sending in id order (the idempotent producer never reorders a partition), each
    key's records reach Kafka in commit order. One relay's throughput is the broker's
    (~6k records/s on the local stack), far above what the services produce. The price: the
    pass's transaction stays open while Kafka acknowledges (bounded by ``send_timeout_seconds``),
    and rows written through a standby replica wait for the active relay's next poll.

    **Bursts go out in growing passes.** After a pass that filled its limit the next one takes
    twice as many rows, up to ``BURST_FACTOR × batch_size``; the first pass that is not full
    resets it. A pass never holds more than ``max_pass_bytes`` of payload. Ten thousand schedule
    slots coming due at one second went out in 20 passes of 500 before, each paying a select, a
    mark and a commit; now in about six.

    **Rows are chosen by being unpublished** (``published_at IS NULL AND parked_at IS NULL``),
    never by an id high-water mark: a lower id whose transaction commits late is sent on a later
    pass (after higher ids of other transactions; same-key writes are serialised by the domain).

    **Held rows wait for their instant.** A row with ``not_before`` (a schedule slot decided
    ahead of time) is not due until the relay's clock reaches it; rows behind it flow meanwhile,
    so it is published after later-written rows of its key — the order of the instants they
    stand for. Until it is due, :func:`withdraw_held` may delete it.

    **Refused rows are parked, not blocking.** A row Kafka refuses (:func:`is_refusal`) gets
    ``attempts`` incremented and ``last_error`` stored; at ``max_attempts`` it is parked
    (``parked_at``), logged as an error and counted in ``automation_outbox_parked_total``, and
    no longer selected, so the rows behind it flow. Parked rows are never purged: an operator
    fixes the cause and re-queues (``parked_at = NULL, attempts = 0``) or deletes them. Failures
    that are not the row's (broker down, timeouts, a producer in a broken state) leave the row
    pending with no attempt counted. After any failed pass the loop backs off exponentially
    (capped), and does not let ``notify`` cut the backoff short: never a hot loop.

    Publishing is at-least-once (a crash or timeout between send and mark re-sends); consumers
    dedupe with their inbox.
    """

    def __init__(self, engine: AsyncEngine, send_many: SendMany, *, service: str, batch_size: int = 200,
                 max_pass_bytes: int = MAX_PASS_BYTES, max_attempts: int = 5, poll_seconds: float = 0.2,
                 max_backoff_seconds: float = 5.0,
                 send_timeout_seconds: float = 60.0, retention: timedelta = timedelta(hours=24),
                 clock: Callable[[], datetime] = utcnow) -> None:
        if batch_size < 1 or max_attempts < 1:
            raise ValueError("batch_size and max_attempts must be at least 1")
        self._engine = engine
        self._send_many = send_many
        self._service = service
        self._batch_size = batch_size
        self._limit = batch_size
        self._max_pass_bytes = max_pass_bytes
        self._max_attempts = max_attempts
        self._poll_seconds = poll_seconds
        self._max_backoff = max(max_backoff_seconds, poll_seconds)
        self._send_timeout = send_timeout_seconds
        self._retention = retention
        self._clock = clock
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Wake the relay now (called after a transaction that wrote outbox rows commits)."""
        self._wake.set()

    async def relay_once(self) -> int:
        """Run one pass; returns how many rows were published (0 on a standby replica)."""
        return (await self.relay_pass()).published

    async def relay_pass(self) -> RelayPass:
        """Send one batch of pending rows if this relay holds the schema's relay lock.

        Raises when the database fails, when ``send_many`` raises or exceeds
        ``send_timeout_seconds``, or on :class:`SendResultMismatch`; the transaction then rolls
        back and every row stays pending with no attempt counted.
        """
        async with self._engine.begin() as conn:
            if not await conn.scalar(_TRY_RELAY_LOCK):
                metrics.OUTBOX_RELAY_ACTIVE.labels(self._service).set(0)
                return RelayPass(standby=True)
            metrics.OUTBOX_RELAY_ACTIVE.labels(self._service).set(1)
            limit = self._limit
            result = (await conn.execute(_SELECT_DUE, {"now": (now := self._clock()), "limit": limit,
                                                       "max_bytes": self._max_pass_bytes})).all()
            rows = publish_order((OutboxRow(*row[:4]) for row in result), limit)
            full = len(rows) >= limit or bool(result and result[-1].running >= self._max_pass_bytes)
            # a batch that is not full leaves nothing due behind it: look up when the next held
            # row comes due, so the loop wakes at that instant rather than up to a poll later
            next_held = None if full else await conn.scalar(_NEXT_HELD, {"now": now})
            if not rows:
                return RelayPass(next_held=next_held)
            outcomes = await asyncio.wait_for(self._send_many(rows), timeout=self._send_timeout)
            if len(outcomes) != len(rows):
                raise SendResultMismatch(f"send_many returned {len(outcomes)} results for {len(rows)} rows")
            acked: list[OutboxRow] = []
            refused: list[tuple[OutboxRow, BaseException]] = []
            deferred: list[tuple[OutboxRow, BaseException]] = []
            for row, outcome in zip(rows, outcomes, strict=True):
                if outcome is None:
                    acked.append(row)
                elif is_refusal(outcome):
                    refused.append((row, outcome))
                else:
                    deferred.append((row, outcome))
            if acked:
                # Losing this mark in a database crash only re-publishes the rows (consumers
                # dedupe), so the pass does not wait for its WAL flush: one fsync fewer per
                # event on the path from a decision to Kafka.
                await conn.execute(_ASYNC_COMMIT)
                await conn.execute(_MARK_PUBLISHED, {"ids": [row.id for row in acked]})
            recorded: list[sa.Row[Any]] = []
            if refused:
                recorded = list(await conn.execute(_RECORD_REFUSALS, {
                    "ids": [row.id for row, _ in refused],
                    "errors": [describe_error(error) for _, error in refused],
                    "max_attempts": self._max_attempts,
                }))
        # committed: only now report what happened
        self._report(acked, refused, deferred, recorded)
        return RelayPass(selected=len(rows), published=len(acked), refused=len(refused),
                         parked=sum(1 for row in recorded if row.parked), deferred=len(deferred),
                         full=full, next_held=next_held)

    def _report(self, acked: list[OutboxRow], refused: list[tuple[OutboxRow, BaseException]],
                deferred: list[tuple[OutboxRow, BaseException]], recorded: list[sa.Row[Any]]) -> None:
        for topic, count in Counter(row.topic for row in acked).items():
            metrics.EVENTS_PRODUCED.labels(self._service, topic).inc(count)
        errors = {row.id: describe_error(error) for row, error in refused}
        for row in recorded:
            fields = {"outbox_id": row.id, "topic": row.topic, "event_type": row.event_type,
                      "attempts": row.attempts, "error": errors.get(row.id)}
            if row.parked:
                metrics.OUTBOX_PARKED_TOTAL.labels(self._service).inc()
                log.error("outbox_row_parked", **fields)
            else:
                log.warning("outbox_row_refused", max_attempts=self._max_attempts, **fields)
        if refused:
            metrics.OUTBOX_SEND_FAILURES.labels(self._service, "refused").inc(len(refused))
        if deferred:
            metrics.OUTBOX_SEND_FAILURES.labels(self._service, "deferred").inc(len(deferred))
            log.warning("outbox_send_deferred", rows=len(deferred), first_id=deferred[0][0].id,
                        error=describe_error(deferred[0][1]))

    async def purge_published(self) -> int:
        """Delete rows published longer ago than the retention.

        Unpublished rows are never touched, and neither are parked rows (``published_at`` stays
        NULL): they wait for an operator however old they are.
        """
        async with self._engine.begin() as conn:
            result = await conn.execute(
                outbox.delete().where(
                    outbox.c.published_at.is_not(None),
                    outbox.c.published_at < sa.func.now() - self._retention,
                )
            )
        return int(result.rowcount or 0)

    async def pending_stats(self) -> PendingStats:
        """Backlog, age of the oldest pending row and parked rows, in one query; sets the gauges.

        The values are the schema's, not this replica's: aggregate them with ``max``, not ``sum``.
        """
        async with self._engine.connect() as conn:
            backlog, oldest, parked = (await conn.execute(_PENDING_STATS, {"now": self._clock()})).one()
        stats = PendingStats(backlog=int(backlog), oldest_age_seconds=max(float(oldest), 0.0), parked=int(parked))
        metrics.OUTBOX_BACKLOG.labels(self._service).set(stats.backlog)
        metrics.OUTBOX_OLDEST_AGE.labels(self._service).set(stats.oldest_age_seconds)
        metrics.OUTBOX_PARKED_ROWS.labels(self._service).set(stats.parked)
        return stats

    async def backlog(self) -> int:
        """How many rows wait to be published (parked rows excluded; see :meth:`pending_stats`)."""
        return (await self.pending_stats()).backlog

    async def run(self) -> None:
        """Relay forever: back-to-back passes while full batches go out, else wait for notify/poll.

        After a failed pass (a row refused or deferred, or an exception) it sleeps an exponential
        backoff capped at ``max_backoff_seconds``; rows stay pending and are retried.
        """
        backoff = self._poll_seconds
        next_purge = next_stats = time.monotonic()
        while True:
            failed = full = False
            wait = self._poll_seconds
            # cleared *before* the pass: a notify that lands while the pass runs (rows committed
            # after its SELECT) must wake the next wait at once, not be cleared after it
            self._wake.clear()
            try:
                if time.monotonic() >= next_purge:
                    await self.purge_published()
                    next_purge = time.monotonic() + PURGE_INTERVAL_SECONDS
                outcome = await self.relay_pass()
                failed, full = outcome.failed, outcome.full
                if outcome.next_held is not None:
                    wait = min(wait, max((outcome.next_held - self._clock()).total_seconds(), 0.0))
            except Exception as exc:  # noqa: BLE001 - DB/Kafka outage or send bug: rows stay pending
                log.warning("outbox_relay_failed", error=describe_error(exc), retry_in=backoff)
                failed = True
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + STATS_INTERVAL_SECONDS
                try:
                    await self.pending_stats()
                except Exception as exc:  # noqa: BLE001 - gauges only; the next refresh retries
                    log.warning("outbox_stats_failed", error=describe_error(exc))
            # a backlog (a burst of schedule slots coming due together) is sent in growing passes:
            # each pass costs a select, a mark and a commit whatever its size
            self._limit = min(self._limit * 2, self._batch_size * BURST_FACTOR) if full and not failed \
                else self._batch_size
            if failed:
                backoff = min(backoff * 2, self._max_backoff)
                await asyncio.sleep(backoff)
                continue
            backoff = self._poll_seconds
            if full:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass
