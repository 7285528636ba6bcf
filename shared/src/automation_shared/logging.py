"""Structured JSON logs (structlog) carrying tenant, automation, run and correlation ids."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from automation_shared.contracts.envelope import Envelope


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stdout; context bound with :func:`bind_event` appears on every line."""
    logging.basicConfig(stream=sys.stdout, level=level, format="%(message)s", force=True)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # per-request lines would log webhook URLs
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> Any:
    """A structlog logger named after the module."""
    return structlog.get_logger(name)


def bind_event(envelope: Envelope) -> None:
    """Bind the ids of the event being handled to every following log line."""
    data = envelope.data
    structlog.contextvars.bind_contextvars(
        tenant_id=envelope.tenantid,
        event_id=envelope.id,
        event_type=envelope.type,
        correlation_id=envelope.correlationid or envelope.id,
        automation_id=data.get("automation_id"),
        run_id=data.get("run_id"),
    )


def clear_event() -> None:
    """Forget the ids bound by :func:`bind_event`."""
    structlog.contextvars.unbind_contextvars(
        "tenant_id", "event_id", "event_type", "correlation_id", "automation_id", "run_id"
    )
