"""The live stream and the CSV export on real Kafka and Postgres, over a real HTTP server
(httpx's in-process transport buffers a whole response, which a stream never ends).

One namespace and one running app serve the module; each test works in its own tenants. The
stream reads two changes per page here (``AUTOMATION_TIMELINE_STREAM_PAGE_SIZE=2``), so a
catch-up after a reconnect pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from automation_shared import topics
from automation_shared.contracts.events import Payload
from automation_shared.contracts.registry import build
from automation_shared.settings import Settings
from automation_shared.testing import KafkaProbe, bearer, prepare_namespace, settings_for, unique_namespace, wait_until
from timeline_builders import detected, finished, skipped, started
from timeline_projector import live
from timeline_projector.adapters import repository
from timeline_projector.main import create_app

pytestmark = pytest.mark.integration

ARRIVAL_TIMEOUT = 30.0
"""Generous: the stream delivers within about a second of the projection; this only bounds a failure."""
TOPIC_OF = {"trigger.detected": topics.TRIGGER_DETECTED, "trigger.skipped": topics.TRIGGER_SKIPPED,
            "run.started": topics.RUN_STARTED, "run.finished": topics.RUN_FINISHED}


def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:8]}"


@dataclass
class Served:
    settings: Settings
    url: str
    client: httpx.AsyncClient
    probe: KafkaProbe
    runtime: Any

    def auth(self, tenant_id: str) -> dict[str, str]:
        return bearer(self.settings, tenant_id, "viewer")

    async def publish(self, tenant_id: str, payload: Payload) -> None:
        envelope = build(payload, event_id=str(uuid.uuid4()), source="test-producer", tenant_id=tenant_id,
                         time=datetime.now(UTC) - timedelta(minutes=5), subject="client-1")
        key = getattr(payload, "run_id", None) or getattr(payload, "skip_id", None)
        await self.probe.publish(TOPIC_OF[envelope.type], envelope.to_bytes(), key=key)

    async def timeline(self, tenant_id: str, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get("/api/v1/timeline", params={"limit": 500, **params},
                                         headers=self.auth(tenant_id))
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events

    async def projected(self, tenant_id: str, check: Callable[[dict[str, dict[str, Any]]], bool]) -> None:
        async def done() -> bool:
            return check({entry["id"]: entry for entry in await self.timeline(tenant_id)})

        await wait_until(done, timeout=ARRIVAL_TIMEOUT, interval=0.3, what=f"entries of {tenant_id} projected")


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` on a real uvicorn server (lifespan included) on a free port of 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=10))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: asyncio.sleep(0, result=server.started or task.done()), timeout=120,
                         what="the projector to start")
        assert server.started, task.result()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def served() -> AsyncIterator[Served]:
    settings = settings_for(unique_namespace("tllive"), "timeline-projector")
    await prepare_namespace(settings, ["timeline_projector"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOMATION_TIMELINE_STREAM_PAGE_SIZE", "2")
        app = create_app(settings)
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client, \
            KafkaProbe(settings) as probe:
        yield Served(settings, url, client, probe, app.state.runtime)


@dataclass
class Block:
    """One SSE block as a client sees it (``event`` empty for an id-only block)."""

    id: str | None
    event: str
    data: str


@dataclass
class Stream:
    """An open SSE connection whose blocks a background task collects."""

    blocks: list[Block] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 0
    content_type: str = ""
    closed: bool = False

    @property
    def entries(self) -> list[Block]:
        return [block for block in self.blocks if block.event == "entry"]

    @property
    def last_id(self) -> str | None:
        ids = [block.id for block in self.blocks if block.id is not None]
        return ids[-1] if ids else None

    def entry_ids(self) -> list[str]:
        return [json.loads(block.data)["id"] for block in self.entries]

    async def until(self, check: Callable[[Stream], bool], what: str) -> None:
        async with asyncio.timeout(ARRIVAL_TIMEOUT):
            while not check(self):
                self.arrived.clear()
                await self.arrived.wait()


async def read_blocks(response: httpx.Response, stream: Stream) -> None:
    fields: dict[str, str] = {}
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if fields or data:
                stream.blocks.append(Block(fields.get("id"), fields.get("event", "message" if data else ""),
                                           "\n".join(data)))
                stream.arrived.set()
            fields, data = {}, []
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
    stream.closed = True
    stream.arrived.set()


@contextlib.asynccontextmanager
async def streaming(served: Served, tenant_id: str, *, headers: dict[str, str] | None = None,
                    **params: Any) -> AsyncIterator[Stream]:
    """An open stream of ``tenant_id``; yields once the server sent its first block (the stream is live)."""
    stream = Stream()
    async with served.client.stream("GET", "/api/v1/timeline/stream", params=params,
                                    headers={**served.auth(tenant_id), **(headers or {})}) as response:
        stream.status, stream.content_type = response.status_code, response.headers["content-type"]
        reader = asyncio.create_task(read_blocks(response, stream))
        try:
            await stream.until(lambda s: bool(s.blocks) or s.closed, "the first block")
            yield stream
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def backlog(served: Served, tenant_id: str, **params: Any) -> list[Block]:
    """Everything a ``follow=false`` stream sends before it closes."""
    async with streaming(served, tenant_id, follow="false", **params) as stream:
        await stream.until(lambda s: s.closed, "the server to close the stream")
    return stream.blocks


async def test_a_new_entry_arrives_on_its_tenants_stream_and_no_other(served: Served) -> None:
    mine, theirs = tenant(), tenant()
    async with streaming(served, mine) as my_stream, streaming(served, theirs) as their_stream:
        assert (my_stream.status, my_stream.content_type.split(";")[0]) == (200, "text/event-stream")

        await served.publish(mine, skipped("skip-mine-" + mine, automation_id="auto-live"))
        await served.publish(theirs, skipped("skip-theirs-" + theirs, automation_id="auto-live"))

        await my_stream.until(lambda s: "skip-mine-" + mine in s.entry_ids(), "my entry")
        await their_stream.until(lambda s: "skip-theirs-" + theirs in s.entry_ids(), "their entry")
    assert my_stream.entry_ids() == ["skip-mine-" + mine]
    assert their_stream.entry_ids() == ["skip-theirs-" + theirs]
    listed = (await served.timeline(mine))[0]
    sent = json.loads(my_stream.entries[0].data)
    assert {key: sent[key] for key in ("id", "result", "message", "automation_id", "label")} == \
        {key: listed[key] for key in ("id", "result", "message", "automation_id", "label")}
    assert int(my_stream.entries[0].id or 0) > 0


async def test_a_reconnect_with_last_event_id_gets_every_later_change_once(served: Served) -> None:
    me = tenant()
    runs = [f"run-{me}-{n}" for n in range(3)]
    async with streaming(served, me) as first:
        for run_id in runs:
            await served.publish(me, detected(run_id, automation_id="auto-resume"))
        await first.until(lambda s: set(runs) <= set(s.entry_ids()), "the three runs")
    resume = first.last_id
    assert resume is not None

    later = [f"skip-{me}-{n}" for n in range(2)]
    for skip_id in later:
        await served.publish(me, skipped(skip_id, automation_id="auto-resume"))
    await served.publish(me, started(runs[0], automation_id="auto-resume"))
    await served.publish(me, finished(runs[0], automation_id="auto-resume"))
    await served.projected(me, lambda entries: set(later) <= set(entries)
                           and entries[runs[0]]["result"] == "success")

    async with streaming(served, me, headers={"Last-Event-ID": resume}) as second:
        await second.until(lambda s: set(later) | {runs[0]} <= set(s.entry_ids()), "the changes after resuming")
        await asyncio.sleep(1.5)  # time for anything that should not come
    ids = [int(block.id) for block in first.entries + second.entries if block.id]
    assert ids == sorted(set(ids)), "event ids repeat or go back"
    assert set(second.entry_ids()) == {*later, runs[0]}  # runs[0] once per transaction that changed it
    assert [json.loads(b.data)["result"] for b in second.entries if json.loads(b.data)["id"] == runs[0]][-1] == \
        "success"

    # the same catch-up with the query parameter, and follow=false closes after it
    replayed = await backlog(served, me, last_event_id=resume)
    assert [json.loads(b.data)["id"] for b in replayed if b.event == "entry"] == second.entry_ids()
    everything = await backlog(served, me, last_event_id=0)
    assert {json.loads(b.data)["id"] for b in everything if b.event == "entry"} == {*runs, *later}


async def test_filters_apply_to_the_stream(served: Served) -> None:
    me = tenant()
    await served.publish(me, skipped(f"skip-{me}-sales", automation_id="auto-a", category="sales"))
    await served.publish(me, skipped(f"skip-{me}-support", automation_id="auto-b", category="support"))
    await served.projected(me, lambda entries: len(entries) == 2)

    support = await backlog(served, me, last_event_id=0, category="support")
    by_automation = await backlog(served, me, last_event_id=0, automation_id="auto-a", result="skipped")

    assert [json.loads(b.data)["id"] for b in support if b.event == "entry"] == [f"skip-{me}-support"]
    assert [json.loads(b.data)["id"] for b in by_automation if b.event == "entry"] == [f"skip-{me}-sales"]
    assert support[-1].id is not None and by_automation[-1].id == support[-1].id  # past the left-out changes


WEIRD_NAME = '=HYPERLINK("http://x.io"), "quoted"\nsecond line'


async def test_the_csv_export_round_trips_to_the_list(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "EXPORT_PAGE", 3)  # several pages
    me = tenant()
    for n in range(4):
        await served.publish(me, detected(f"run-{me}-{n}", automation_id="auto-csv", name=WEIRD_NAME,
                                          category="sales" if n % 2 else "support"))
    await served.publish(me, skipped(f"skip-{me}", automation_id="auto-csv", category="sales",
                                     message="@risky, \"quoted\" reason"))
    await served.projected(me, lambda entries: len(entries) == 5)

    for params in ({}, {"category": "sales"}, {"result": "skipped", "days": 1}, {"automation_id": "nobody"}):
        response = await served.client.get("/api/v1/timeline/export", params={"format": "csv", **params},
                                           headers=served.auth(me))
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        assert response.headers["content-disposition"] == f"attachment; filename=timeline-{me}-{day}.csv"
        header, *rows = list(csv.reader(io.StringIO(response.text, newline="")))
        assert header == list(live.EXPORT_COLUMNS)
        listed = await served.timeline(me, **params)
        exported = [dict(zip(header, row, strict=True)) for row in rows]
        assert [row["id"] for row in exported] == [entry["id"] for entry in listed], params
        for row, entry in zip(exported, listed, strict=True):
            for column in ("automation_name", "automation_category", "message", "result", "trigger_type",
                           "automation_id", "label", "run_id"):
                value = entry[column] or ""
                assert row[column] == ("'" + value if value.startswith(("=", "+", "-", "@")) else value), column
            assert datetime.fromisoformat(row["timestamp"]) == datetime.fromisoformat(entry["timestamp"])
            assert row["test_mode"] == str(entry["test_mode"]).lower()
        if not params:
            assert sum(row["automation_name"] == "'" + WEIRD_NAME for row in exported) == 4

    refused = await served.client.get("/api/v1/timeline/export", params={"format": "xml"}, headers=served.auth(me))
    assert refused.status_code == 422
    anonymous = await served.client.get("/api/v1/timeline/export")
    assert anonymous.status_code == 401


async def test_the_csv_cells_are_formula_safe_and_quoted() -> None:
    values = ("=1+1", "+1", "-1", "@SUM(A1)", "a,b", 'say "hi"', "x\ny", None, True, 7)
    cells = [live.csv_cell(value) for value in values]
    assert cells == ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "a,b", 'say "hi"', "x\ny", "", "true", 7]
    assert live.csv_text([["a,b", 'say "hi"', "x\ny"]]) == '"a,b","say ""hi""","x\ny"\r\n'


async def test_a_resume_point_the_log_no_longer_keeps_gets_a_reset(served: Served) -> None:
    me = tenant()
    await served.publish(me, skipped(f"skip-{me}", automation_id="auto-reset"))
    await served.projected(me, lambda entries: len(entries) == 1)

    unknown = await backlog(served, me, last_event_id=10**12)
    assert unknown[0].event == "reset"

    async with served.runtime.engine.begin() as conn:  # purge everything (but the newest row) now
        while await repository.purge_changes(conn, older_than=datetime.now(UTC) + timedelta(days=1), chunk=1000):
            pass
    async with served.runtime.engine.connect() as conn:
        oldest, newest = await repository.change_bounds(conn)
    assert oldest == newest > 1

    purged = await backlog(served, me, last_event_id=0)
    assert purged[0].event == "reset" and json.loads(purged[0].data)["last_event_id"] == str(newest)
    assert purged[0].id == str(newest) and not [b for b in purged if b.event == "entry"]
