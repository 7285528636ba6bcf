"""Assembles a service process: settings, engine, Kafka producer and consumers, outbox relay, app.

``build_service`` is called by each service's ``main.create_app``; nothing is created at import
time. The FastAPI lifespan starts the producer, the batch consumers (after every subscription
is registered), the outbox relay, the inbox purge and the service's background loops, and stops
them in reverse order: consumers finish and commit the batch in flight before they leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from automation_shared import metrics
from automation_shared.contracts.asyncapi import asyncapi_document
from automation_shared.db import create_engine, ping
from automation_shared.delivery import OutboxRelay, OutboxRow
from automation_shared.failures import is_transient
from automation_shared.inbox import purge_inbox
from automation_shared.logging import configure_logging, get_logger
from automation_shared.messaging import BatchConsumer, KafkaPublisher, Subscription
from automation_shared.openapi import document_errors, refuse_nul_in_url
from automation_shared.settings import Settings, check_production_safety
from automation_shared.system import clock_of

log = get_logger(__name__)

INBOX_PURGE_INTERVAL_SECONDS = 600.0
STOP_GRACE_SECONDS = 30.0


@dataclass
class Runtime:
    """The live resources of one service process, shared by handlers, routes and loops."""

    settings: Settings
    schema: str
    engine: AsyncEngine
    publisher: KafkaPublisher
    relay: OutboxRelay
    consumers: list[BatchConsumer[Any]] = field(default_factory=list)
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncConnection]:
        """One transaction for load → decide → save → outbox; the relay is woken once it committed.

        An exception inside rolls everything back (nothing half-written) and wakes nothing.
        """
        async with self.engine.begin() as conn:
            yield conn
        self.relay.notify()

    def subscribe(self, subscription: Subscription[Any]) -> BatchConsumer[Any]:
        """Consume ``subscription`` in batches once the service starts."""
        consumer = BatchConsumer(subscription, settings=self.settings, engine=self.engine,
                                 publisher=self.publisher)
        self.consumers.append(consumer)
        return consumer


def create_runtime(settings: Settings, schema_base: str, *, clock: Callable[[], datetime] | None = None) -> Runtime:
    """Build (but do not start) the engine, Kafka clients and relay of a service.

    ``clock`` is the service's clock (the relay publishes a held row when it says so); by
    default the configured one (:func:`clock_of` of ``clock_rate``/``clock_epoch``).

    Raises:
        InsecureSettings: the built-in development JWT key without ``AUTOMATION_DEV_MODE``.
    """
    check_production_safety(settings)
    configure_logging(settings.service_name, settings.log_level)
    schema = settings.db_schema(schema_base)
    engine = create_engine(settings, schema)
    publisher = KafkaPublisher(settings)

    async def send_rows(rows: Sequence[OutboxRow]) -> list[BaseException | None]:
        return await publisher.send_many([(row.topic, row.key, row.payload) for row in rows])

    relay = OutboxRelay(engine, send_rows, service=settings.service_name, batch_size=settings.outbox_batch_size,
                        max_attempts=settings.outbox_max_attempts, poll_seconds=settings.outbox_poll_seconds,
                        retention=timedelta(hours=settings.outbox_retention_hours),
                        clock=clock or clock_of(settings.clock_rate, settings.clock_epoch))
    return Runtime(settings=settings, schema=schema, engine=engine, publisher=publisher, relay=relay)


def health_router(runtime: Runtime) -> APIRouter:
    """``/health/live``, ``/health/ready`` (Kafka, Postgres, consumer lag) and ``/metrics``."""
    router = APIRouter(tags=["health"])

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/health/ready")
    async def ready() -> JSONResponse:
        checks: dict[str, object] = {}
        try:
            async with runtime.engine.connect() as conn:
                await ping(conn)
            checks["postgres"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported as not ready
            checks["postgres"] = f"error: {exc}"
        checks["kafka"] = "ok" if await runtime.publisher.ping(timeout=2.0) else "error: no answer"
        checks["consumer_lag"] = await consumer_lag(runtime)
        try:
            checks["outbox"] = dataclasses.asdict(await runtime.relay.pending_stats())
        except Exception as exc:  # noqa: BLE001 - reported, not fatal: alert on the metrics instead
            checks["outbox"] = f"error: {exc}"
        healthy = checks["postgres"] == "ok" and checks["kafka"] == "ok"
        return JSONResponse({"status": "ready" if healthy else "not_ready", "checks": checks},
                            status_code=200 if healthy else 503)

    @router.get("/asyncapi.json", tags=["docs"])
    async def asyncapi() -> dict[str, Any]:
        """AsyncAPI 3.0 description of every topic and event type (generated from the contracts)."""
        return asyncapi_document(runtime.settings.namespace)

    @router.get("/metrics", response_class=PlainTextResponse)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def consumer_lag(runtime: Runtime) -> dict[str, int]:
    """Records behind the high-water mark per topic, from this process's consumers."""
    lag: dict[str, int] = {}
    for batch_consumer in runtime.consumers:
        consumer = batch_consumer.consumer
        if consumer is None:
            continue
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = await consumer.position(tp)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(highwater - position, 0)
    for topic, value in lag.items():
        metrics.CONSUMER_LAG.labels(runtime.settings.service_name, topic).set(value)
    return lag


async def supervise(name: str, loop: Callable[[], Coroutine[Any, Any, None]], *, service: str,
                    first_delay: float = 1.0, max_delay: float = 30.0) -> None:
    """Run a background loop and restart it when it crashes, so none dies silently.

    A consumer, relay or run driver that raised would otherwise leave a process that answers
    ``/health/ready`` but no longer consumes, publishes or drives anything. The crash is logged
    with its traceback and counted (``automation_background_restarts_total``); the loop restarts
    after a growing delay. A loop that returns normally (a consumer asked to stop) is not restarted.
    """
    delay = first_delay
    while True:
        try:
            await loop()
            return
        except Exception as exc:  # noqa: BLE001 - logged with traceback, counted, restarted with backoff
            log.exception("background_loop_crashed", loop=name, error=repr(exc), restart_in=delay)
            metrics.BACKGROUND_RESTARTS.labels(service, name).inc()
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)


async def purge_inbox_forever(runtime: Runtime) -> None:
    """Delete inbox rows past the retention every few minutes (the README states the window)."""
    retention = timedelta(hours=runtime.settings.inbox_retention_hours)
    while True:
        try:
            async with runtime.engine.begin() as conn:
                purged = await purge_inbox(conn, retention)
            if purged:
                log.info("inbox_purged", rows=purged)
        except Exception as exc:  # noqa: BLE001 - an outage only delays the purge; the next pass retries
            log.warning("inbox_purge_failed", error=repr(exc))
        await asyncio.sleep(INBOX_PURGE_INTERVAL_SECONDS)


def build_service(
    runtime: Runtime,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The FastAPI app of a service, with lifespan managing broker, relay and loops."""

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await runtime.publisher.start()
        for consumer in runtime.consumers:
            await consumer.start()
        service = runtime.settings.service_name
        loops: list[tuple[str, Callable[[], Coroutine[Any, Any, None]]]] = [
            ("outbox-relay", runtime.relay.run),
            ("inbox-purge", lambda: purge_inbox_forever(runtime)),
            *((getattr(loop, "__name__", "loop"), loop) for loop in runtime.background),
        ]
        consuming = [asyncio.create_task(supervise(f"consume-{c.subscription.consumer}", c.run, service=service),
                                         name=f"consume-{c.subscription.consumer}") for c in runtime.consumers]
        tasks = [asyncio.create_task(supervise(name, loop, service=service), name=name) for name, loop in loops]
        log.info("service_started", schema=runtime.schema)
        try:
            yield
        finally:
            for consumer in runtime.consumers:
                consumer.request_stop()
            _done, late = await asyncio.wait(consuming, timeout=STOP_GRACE_SECONDS) if consuming else (set(), set())
            for task in (*late, *tasks):
                task.cancel()
            await asyncio.gather(*consuming, *tasks, return_exceptions=True)
            for consumer in runtime.consumers:
                try:
                    async with asyncio.timeout(STOP_GRACE_SECONDS):
                        await consumer.stop()
                except TimeoutError:  # the group's coordinator will drop us after the session timeout
                    log.error("consumer_stop_timed_out", consumer=consumer.subscription.consumer)
            await runtime.publisher.stop()
            await runtime.engine.dispose()
            log.info("service_stopped")

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)

    @app.exception_handler(sa.exc.DBAPIError)
    @app.exception_handler(sa.exc.TimeoutError)
    @app.exception_handler(ConnectionError)
    async def database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        """An outage answers 503 (retry), never a 500; other database errors stay server errors."""
        if not is_transient(exc):
            raise exc
        log.warning("request_failed_database_unavailable", error=repr(exc))
        return JSONResponse({"detail": "database temporarily unavailable, retry shortly"}, status_code=503,
                            headers={"Retry-After": "1"})

    app.middleware("http")(refuse_nul_in_url)
    document_errors(app)
    app.state.settings = runtime.settings
    app.state.runtime = runtime
    app.include_router(health_router(runtime))
    for router in routers:
        app.include_router(router)
    return app
