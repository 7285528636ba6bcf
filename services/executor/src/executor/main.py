"""Builds the executor service from settings (``uvicorn --factory executor.main:create_app``)."""

from __future__ import annotations

from datetime import timedelta

from automation_shared.service import build_service, create_runtime
from automation_shared.settings import Settings
from automation_shared.system import clock_of
from fastapi import FastAPI

from executor import SCHEMA, api, credentials_api, handlers
from executor.driver import RunDriver


def create_app(settings: Settings | None = None) -> FastAPI:
    """The executor app: run starter consumer, run driver, runs and credentials API, health and metrics."""
    settings = settings or Settings(service_name="executor")
    # one clock for runs, delays, retries and the relay: real time, or on a test stack one that
    # runs faster (AUTOMATION_CLOCK_RATE), so a 1-minute delay is a real, durable wait of a second
    clock = clock_of(settings.clock_rate, settings.clock_epoch)
    runtime = create_runtime(settings, SCHEMA, clock=clock)
    driver = RunDriver(runtime, lease=timedelta(seconds=settings.run_lease_seconds),
                       pool_size=settings.run_pool_size, tenant_slots=settings.run_tenant_slots, clock=clock)
    handlers.register(runtime, driver=driver, clock=clock)
    runtime.background.append(driver.run)
    return build_service(
        runtime,
        title="executor",
        description="Runs action chains of detected triggers: retries, idempotent side effects, run history.",
        routers=[api.create_router(runtime, wake=driver.wake, clock=clock),
                 credentials_api.create_router(runtime, clock=clock)],
    )
