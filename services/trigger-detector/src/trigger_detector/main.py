"""Builds the trigger-detector (``uvicorn --factory trigger_detector.main:create_app``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from automation_shared.service import build_service, create_runtime
from automation_shared.settings import Settings
from automation_shared.system import clock_of
from fastapi import FastAPI

from trigger_detector import SCHEMA, api, handlers
from trigger_detector.adapters.rule_cache import RuleCache
from trigger_detector.adapters.scheduler import BehaviorTimers, DeferredFirings, ScheduleDriver


def create_app(settings: Settings | None = None, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The trigger-detector app: rules API, event ingest, detection consumer, schedule and timer loops.

    ``clock`` is the one clock of routes, handlers and loops: by default the real one, or the
    faster one test stacks configure (``AUTOMATION_CLOCK_RATE``); in-process tests pass their own.
    """
    settings = settings or Settings(service_name="trigger-detector")
    clock = clock or clock_of(settings.clock_rate, settings.clock_epoch)
    runtime = create_runtime(settings, SCHEMA, clock=clock)
    handlers.register(runtime, RuleCache(), clock=clock)
    handlers.register_stats(runtime)
    runtime.background.append(ScheduleDriver(runtime, clock=clock).run)
    runtime.background.append(BehaviorTimers(runtime, clock=clock).run)
    runtime.background.append(DeferredFirings(runtime, clock=clock).run)
    return build_service(
        runtime,
        title="trigger-detector",
        description="Rules (definitions, versions, deploy/pause) and detection of event and schedule triggers.",
        routers=[api.router(runtime, clock=clock)],
    )
