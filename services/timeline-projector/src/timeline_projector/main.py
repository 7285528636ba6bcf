"""Builds the timeline projector from settings (``uvicorn --factory timeline_projector.main:create_app``)."""

from __future__ import annotations

from automation_shared.service import build_service, create_runtime
from automation_shared.settings import Settings
from fastapi import FastAPI

from timeline_projector import SCHEMA, api, handlers, live


def create_app(settings: Settings | None = None) -> FastAPI:
    """The timeline-projector app: projecting consumers, read API, health and metrics."""
    settings = settings or Settings(service_name="timeline-projector")
    runtime = create_runtime(settings, SCHEMA)
    handlers.register(runtime)
    return build_service(
        runtime,
        title="timeline-projector",
        description="Read models projected from the event log: timeline, run history and stats.",
        routers=[live.create_router(runtime), api.create_router(runtime)],  # live first: /timeline/{entry_id}
    )
