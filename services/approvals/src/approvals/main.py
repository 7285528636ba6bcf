"""Builds the approvals service from settings (``uvicorn --factory approvals.main:create_app``)."""

from __future__ import annotations

from automation_shared.service import build_service, create_runtime
from automation_shared.settings import Settings
from fastapi import FastAPI

from approvals import SCHEMA, handlers


def create_app(settings: Settings | None = None) -> FastAPI:
    """The approvals app: approval queue consumer, health and metrics."""
    settings = settings or Settings(service_name="approvals")
    runtime = create_runtime(settings, SCHEMA)
    handlers.register(runtime)
    return build_service(
        runtime,
        title="approvals",
        description="Governance: approval queue for runs and steps that need a decision.",
    )
