"""The live timeline: a Server-Sent Events stream of new and changed entries, and the CSV export.

Every projection transaction appends the entries it created or changed to the change log
(``timeline_changes``), with ids allocated in commit order, and notifies channel
``timeline_changes``. A stream sends, for each change of the caller's tenant after its resume
point, the entry as the timeline list renders it, with the change id as the event id; a client
that reconnects with ``Last-Event-ID`` gets everything after it, once. One ``LISTEN`` connection
per process wakes every stream of the process; while it is down, streams poll. A stream holds a
database connection only while it reads a page, never while it waits.

Change rows older than the retention are purged; a resume point older than the oldest row kept
(or newer than the newest: another database) gets ``event: reset``: reload the list.

Uvicorn finishes open responses before it runs the lifespan shutdown, and a stream never finishes
by itself, so streams end on SIGTERM/SIGINT themselves (see :func:`ending_on_signals`).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import re
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import FrameType
from typing import Annotated, Any, Final

from automation_shared.auth import CurrentPrincipal
from automation_shared.failures import is_transient
from automation_shared.logging import get_logger
from automation_shared.service import Runtime
from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import RowMapping

from timeline_projector.adapters import repository
from timeline_projector.adapters.repository import TimelineFilter
from timeline_projector.api import (
    AutomationId,
    Category,
    Clock,
    Days,
    ResultParam,
    TriggerType,
    entry_fields,
    entry_view,
    utc_now,
)
from timeline_projector.domain import stats as st

log = get_logger(__name__)

RETRY_MS: Final = 2_000
"""Reconnection delay the stream asks ``EventSource`` clients for."""
LISTENER_PING_SECONDS: Final = 30.0
PURGE_CHUNK: Final = 10_000
EXPORT_PAGE: Final = 1_000
MAX_EVENT_ID: Final = 2**63 - 1


class LiveSettings(BaseSettings):
    """Settings of the stream and the change log (prefix ``AUTOMATION_TIMELINE_``)."""

    model_config = SettingsConfigDict(env_prefix="AUTOMATION_TIMELINE_", extra="ignore", frozen=True)

    changes_retention_hours: float = Field(24.0, gt=0, description="Change rows (stream resume points) kept this long.")
    changes_purge_seconds: float = Field(600.0, gt=0, description="Interval of the change-log purge.")
    stream_heartbeat_seconds: float = Field(15.0, gt=0, description="A `: keep-alive` comment after this much quiet.")
    stream_poll_seconds: float = Field(1.0, gt=0, le=1.0, description="Poll interval while LISTEN is down.")
    stream_page_size: int = Field(500, ge=1, le=10_000, description="Most changes one read sends (catch-up pages).")


class ChangeFeed:
    """Wakes this process's streams when the change log may have grown, or when they must end."""

    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self.listening = False
        self.stopping = False

    def waiter(self) -> asyncio.Event:
        """The event the next :meth:`wake` sets: take it *before* reading, so no wake-up is lost."""
        return self._changed

    def wake(self) -> None:
        """Wake every stream waiting now."""
        self._changed.set()
        self._changed = asyncio.Event()

    def stop(self) -> None:
        """End every stream (shutdown)."""
        self.stopping = True
        self.wake()


@contextlib.contextmanager
def ending_on_signals(on_signal: Callable[[], None]) -> Iterator[None]:
    """Call ``on_signal`` (in the event loop) on SIGTERM and SIGINT, then whatever handled them before.

    Uvicorn handles those signals by finishing open responses, then running the lifespan shutdown;
    open streams would hold that up until ``--timeout-graceful-shutdown`` cancels them. Only the
    main thread may handle signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[int, Any] = {}

    def handle(sig: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(on_signal)
        before = previous.get(sig)
        if callable(before):
            before(sig, frame)
        elif before == signal.SIG_DFL:
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)

    for handled in (signal.SIGTERM, signal.SIGINT):
        previous[handled] = signal.signal(handled, handle)
    try:
        yield
    finally:
        for number, before in previous.items():
            if signal.getsignal(number) is handle and before is not None:
                signal.signal(number, before)


async def woken_or_timeout(event: asyncio.Event, timeout: float) -> None:
    """Wait until ``event`` is set or ``timeout`` seconds passed."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(timeout, 0.0)):
            await event.wait()


def server_sent_event(event: str, event_id: int, data: str) -> str:
    """One SSE block (``data`` is one line: JSON escapes line breaks)."""
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n"


FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> str | int:
    """A CSV cell: text starting like a spreadsheet formula is prefixed with ``'`` (formula injection)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


EXPORT_COLUMNS: Final = ("id", "timestamp", "automation_id", "automation_name", "automation_category",
                         "trigger_type", "result", "label", "message", "run_id", "workflow_status", "action_type",
                         "test_mode", "duration_ms")


def export_record(row: RowMapping, *, now: datetime) -> list[str | int]:
    """The cells of one entry, in :data:`EXPORT_COLUMNS` order."""
    fields = entry_fields(row, now=now)
    workflow = fields["workflow"]
    values = {**fields, "result": fields["result"].value,
              "workflow_status": workflow.status if workflow else None,
              "action_type": workflow.action_type if workflow else None,
              "duration_ms": fields["metadata"].get("duration_ms")}
    return [csv_cell(values[column]) for column in EXPORT_COLUMNS]


def csv_text(rows: list[list[str | int]]) -> str:
    """Rows as RFC 4180 CSV (quoted where needed, CRLF line ends)."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()


def attachment_name(tenant_id: str, day: datetime) -> str:
    """``timeline-<tenant>-<YYYY-MM-DD>.csv``, with anything unsafe in a header replaced."""
    return f"timeline-{re.sub(r'[^A-Za-z0-9._-]', '_', tenant_id)[:100]}-{day:%Y-%m-%d}.csv"


class ExportFormat(StrEnum):
    """Export formats."""

    CSV = "csv"


STREAM_EVENT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "One event: `entry` (data: the entry as `GET /api/v1/timeline` renders it, JSON) or `reset` "
                   "(data: `{\"reason\", \"last_event_id\"}`: the resume point is gone, reload the list).",
    "required": ["data", "event"],
    "properties": {
        "event": {"type": "string", "enum": ["entry", "reset"]},
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "Change id: send it back as Last-Event-ID."},
        "data": {"type": "string"},
        "retry": {"type": "integer"},
    },
}

Follow = Annotated[bool, Query(description=(
    "true (default): keep the stream open and send changes as they are projected; false: send the changes "
    "after the resume point, then close."))]
LastEventIdQuery = Annotated[int | None, Query(ge=0, le=MAX_EVENT_ID, description=(
    "Resume after this event id (for clients that cannot set the Last-Event-ID header; the header wins)."))]
LastEventIdHeader = Annotated[int | None, Header(alias="Last-Event-ID", ge=0, le=MAX_EVENT_ID, description=(
    "Resume after this event id (EventSource sends it when it reconnects)."))]
ExportFormatParam = Annotated[ExportFormat, Query(alias="format", description="Export format: `csv` only.")]


def create_router(runtime: Runtime, *, clock: Clock = utc_now, settings: LiveSettings | None = None) -> APIRouter:
    """``/api/v1/timeline/stream`` and ``/api/v1/timeline/export`` (include it before the API's router:
    ``/api/v1/timeline/{entry_id}`` would catch both), plus the background loops they need."""
    settings = settings or LiveSettings()
    router = APIRouter(tags=["timeline"])
    feed = ChangeFeed()

    async def listen_for_changes() -> None:
        """Wake the streams on each notification of this schema's change log, over one connection."""
        async with runtime.engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            assert driver is not None
            lost = asyncio.Event()

            def on_notification(_conn: object, _pid: int, _channel: str, payload: str) -> None:
                if payload == runtime.schema:
                    feed.wake()

            driver.add_termination_listener(lambda _conn: lost.set())
            try:
                await driver.add_listener(repository.CHANGES_CHANNEL, on_notification)
                feed.listening = True
                feed.wake()  # whatever changed while nobody listened
                while not lost.is_set():
                    await woken_or_timeout(lost, LISTENER_PING_SECONDS)
                    async with asyncio.timeout(LISTENER_PING_SECONDS):
                        await driver.execute("SELECT 1")
                raise ConnectionError("the LISTEN connection was closed")
            finally:
                feed.listening = False
                await conn.invalidate()  # never back to the pool still listening

    async def end_streams_on_shutdown() -> None:
        """End the streams on SIGTERM/SIGINT, or at the latest when the lifespan stops the loops."""
        with ending_on_signals(feed.stop):
            try:
                await asyncio.Event().wait()
            finally:
                feed.stop()

    async def purge_old_changes() -> None:
        """Delete change rows past the retention, a chunk per transaction, every few minutes."""
        retention = timedelta(hours=settings.changes_retention_hours)
        while True:
            cutoff = datetime.now(UTC) - retention
            try:
                while True:
                    async with runtime.engine.begin() as conn:
                        purged = await repository.purge_changes(conn, older_than=cutoff, chunk=PURGE_CHUNK)
                    if purged:
                        log.info("timeline_changes_purged", rows=purged)
                    if purged < PURGE_CHUNK:
                        break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("timeline_changes_purge_failed", error=repr(exc))  # an outage only delays it
            await asyncio.sleep(settings.changes_purge_seconds)

    runtime.background.extend([listen_for_changes, end_streams_on_shutdown, purge_old_changes])

    async def read_changes(tenant_id: str, flt: TimelineFilter, position: int) -> tuple[list[str], int, bool]:
        """The events of the next page of changes after ``position``: (blocks, new position, page full).

        An entry changed several times in the page is sent once, with its latest change id. When
        the page ends with changes the filters left out, an id-only block moves the client's resume
        point past them.
        """
        async with runtime.engine.connect() as conn:
            changes = await repository.changes_after(conn, tenant_id, position, limit=settings.stream_page_size)
            rows = await repository.fetch_entries(conn, flt, sorted({entry for _, entry in changes})) \
                if changes else {}
        if not changes:
            return [], position, False
        latest = {entry_id: change_id for change_id, entry_id in changes}
        sent = sorted((change_id, entry_id) for entry_id, change_id in latest.items() if entry_id in rows)
        now = clock()
        blocks = [server_sent_event("entry", change_id, entry_view(rows[entry_id], now=now).model_dump_json())
                  for change_id, entry_id in sent]
        newest = changes[-1][0]
        if not sent or sent[-1][0] != newest:
            blocks.append(f"id: {newest}\n\n")
        return blocks, newest, len(changes) == settings.stream_page_size

    async def stream_events(tenant_id: str, flt: TimelineFilter, position: int, *, reset: bool,
                            follow: bool) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        if reset:
            yield server_sent_event("reset", position, json.dumps({
                "reason": "the resume point is older than the change log keeps, or unknown: reload the list",
                "last_event_id": str(position)}))
        yield f"retry: {RETRY_MS}\nid: {position}\n\n"
        quiet_until = loop.time() + settings.stream_heartbeat_seconds
        while not feed.stopping:
            woken = feed.waiter()
            try:
                blocks, position, full = await read_changes(tenant_id, flt, position)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("timeline_stream_ended_database_unavailable", error=repr(exc))
                return  # the client reconnects with its Last-Event-ID
            for block in blocks:
                yield block
            if blocks:
                quiet_until = loop.time() + settings.stream_heartbeat_seconds
            if full:
                continue
            if not follow:
                return
            wait = settings.stream_heartbeat_seconds if feed.listening else settings.stream_poll_seconds
            await woken_or_timeout(woken, min(wait, quiet_until - loop.time()))
            if loop.time() >= quiet_until and not feed.stopping:
                yield ": keep-alive\n\n"
                quiet_until = loop.time() + settings.stream_heartbeat_seconds

    @router.get("/api/v1/timeline/stream", response_class=StreamingResponse, responses={200: {
        "description": "Server-Sent Events: `entry` per new or changed entry, `reset` when the resume point is "
                       "gone; `: keep-alive` comments while quiet.",
        "content": {"text/event-stream": {"schema": STREAM_EVENT_SCHEMA}}}})
    async def stream_timeline(principal: CurrentPrincipal, category: Category = None, result: ResultParam = None,
                              automation_id: AutomationId = None, trigger_type: TriggerType = None,
                              follow: Follow = True, last_event_id: LastEventIdQuery = None,
                              last_event_id_header: LastEventIdHeader = None) -> StreamingResponse:
        """New and changed entries of the caller's tenant as Server-Sent Events, resumable with ``Last-Event-ID``.

        Without a resume point the stream starts at the newest change. Each entry event carries the
        entry as the timeline list renders it; the timeline's filters apply to the entry as it is now.
        """
        resume = last_event_id_header if last_event_id_header is not None else last_event_id
        async with runtime.engine.connect() as conn:
            oldest, newest = await repository.change_bounds(conn)
        reset = resume is not None and (resume > newest or resume < oldest - 1)
        position = newest if resume is None or reset else resume
        flt = TimelineFilter(tenant_id=principal.tenant_id, results=result.results() if result else None,
                             category=category, automation_id=automation_id, trigger_type=trigger_type)
        return StreamingResponse(stream_events(principal.tenant_id, flt, position, reset=reset, follow=follow),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get("/api/v1/timeline/export", response_class=StreamingResponse, responses={200: {
        "description": "The matching entries as CSV with a header row, newest first.",
        "content": {"text/csv": {"schema": {"type": "string"}}}}})
    async def export_timeline(principal: CurrentPrincipal, export_format: ExportFormatParam = ExportFormat.CSV,
                              category: Category = None, result: ResultParam = None,
                              automation_id: AutomationId = None, trigger_type: TriggerType = None,
                              days: Days = None) -> StreamingResponse:
        """The entries matching the timeline's filters as a CSV download, streamed page by page.

        Cells starting with ``=``, ``+``, ``-`` or ``@`` are prefixed with ``'`` so spreadsheets do not
        run them as formulas. Pages are read by keyset, each in its own short transaction.
        """
        now = clock()
        start = st.first_day(days, now=now)
        flt = TimelineFilter(tenant_id=principal.tenant_id, results=result.results() if result else None,
                             category=category, automation_id=automation_id, trigger_type=trigger_type,
                             since=None if start is None else st.day_start(start))
        async with runtime.engine.connect() as conn:  # the first page before answering: an outage is a 503
            first = await repository.fetch_after(conn, flt, after=None, limit=EXPORT_PAGE)

        async def pages() -> AsyncIterator[str]:
            yield csv_text([list(EXPORT_COLUMNS)])
            rows = first
            while rows:
                yield csv_text([export_record(row, now=now) for row in rows])
                if len(rows) < EXPORT_PAGE:
                    return
                after = (rows[-1]["timestamp"], rows[-1]["id"])
                async with runtime.engine.connect() as conn:
                    rows = await repository.fetch_after(conn, flt, after=after, limit=EXPORT_PAGE)

        disposition = f"attachment; filename={attachment_name(principal.tenant_id, now)}"
        return StreamingResponse(pages(), media_type="text/csv", headers={"Content-Disposition": disposition})

    return router
