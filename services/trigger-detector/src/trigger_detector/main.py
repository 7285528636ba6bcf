"""Builds the trigger-detector (``uvicorn --factory trigger_detector.main:create_app``)."""

from __future__ import annotations

from automation_shared.service import build_service, create_runtime
from automation_shared.settings import Settings
from fastapi import FastAPI

from trigger_detector import SCHEMA, api, handlers
from trigger_detector.adapters.rule_cache import RuleCache


def create_app(settings: Settings | None = None) -> FastAPI:
    """The trigger-detector app: rules API, event ingest, detection consumer."""
    settings = settings or Settings(service_name="trigger-detector")
    runtime = create_runtime(settings, SCHEMA)
    handlers.register(runtime, RuleCache())
    handlers.register_stats(runtime)
    return build_service(
        runtime,
        title="trigger-detector",
        description="Rules (definitions, versions, deploy/pause) and detection of trigger events.",
        routers=[api.router(runtime)],
    )
