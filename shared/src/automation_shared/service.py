"""Assembles a service process: settings, engine, broker, outbox relay, FastAPI app.

``build_service`` is called by each service's ``main.create_app``; nothing is created at import
time. The FastAPI lifespan starts the broker (after every subscriber is registered), the
outbox relay and the service's background loops, and stops them in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine

from automation_shared import metrics
from automation_shared.contracts.asyncapi import asyncapi_document
from automation_shared.db import create_engine, ping
from automation_shared.delivery import OutboxRelay
from automation_shared.logging import configure_logging, get_logger
from automation_shared.messaging import create_broker, publish
from automation_shared.settings import Settings

log = get_logger(__name__)


@dataclass
class Runtime:
    """The live resources of one service process, shared by handlers, routes and loops."""

    settings: Settings
    schema: str
    engine: AsyncEngine
    broker: KafkaBroker
    relay: OutboxRelay
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)


def create_runtime(settings: Settings, schema_base: str) -> Runtime:
    """Build (but do not start) the engine, broker and relay of a service."""
    configure_logging(settings.service_name, settings.log_level)
    schema = settings.db_schema(schema_base)
    engine = create_engine(settings, schema)
    broker = create_broker(settings)

    async def _publish(topic: str, key: str | None, payload: bytes) -> None:
        await publish(broker, settings.topic(topic), key, payload)

    relay = OutboxRelay(engine, _publish, service=settings.service_name, poll_seconds=settings.outbox_poll_seconds,
                        retention=timedelta(hours=settings.outbox_retention_hours))
    return Runtime(settings=settings, schema=schema, engine=engine, broker=broker, relay=relay)


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
        try:
            ok = await runtime.broker.ping(timeout=2.0)
            checks["kafka"] = "ok" if ok else "error: no answer"
        except Exception as exc:  # noqa: BLE001 - reported as not ready
            checks["kafka"] = f"error: {exc}"
        checks["consumer_lag"] = await consumer_lag(runtime)
        try:
            backlog = await runtime.relay.backlog()
            metrics.OUTBOX_BACKLOG.labels(runtime.settings.service_name).set(backlog)
            checks["outbox_backlog"] = backlog
        except Exception as exc:  # noqa: BLE001 - reported as not ready
            checks["outbox_backlog"] = f"error: {exc}"
        healthy = checks["postgres"] == "ok" and checks["kafka"] == "ok"
        return JSONResponse({"status": "ready" if healthy else "not_ready", "checks": checks},
                            status_code=200 if healthy else 503)

    @router.get("/asyncapi.json", tags=["docs"])
    async def asyncapi() -> dict[str, Any]:
        """AsyncAPI 3.0 description of every topic and event type (generated from the contracts)."""
        return asyncapi_document(runtime.settings.namespace)

    @router.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def consumer_lag(runtime: Runtime) -> dict[str, int]:
    """Records behind the high-water mark per topic, from this process's consumers."""
    lag: dict[str, int] = {}
    for subscriber in runtime.broker.subscribers:
        consumer = getattr(subscriber, "consumer", None)
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
        await runtime.broker.start()
        tasks = [asyncio.create_task(runtime.relay.run(), name="outbox-relay")]
        tasks += [asyncio.create_task(loop(), name=getattr(loop, "__name__", "loop")) for loop in runtime.background]
        log.info("service_started", schema=runtime.schema)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runtime.broker.stop()
            await runtime.engine.dispose()
            log.info("service_stopped")

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    app.state.settings = runtime.settings
    app.state.runtime = runtime
    app.include_router(health_router(runtime))
    for router in routers:
        app.include_router(router)
    return app
