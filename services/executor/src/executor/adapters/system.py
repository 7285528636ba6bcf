"""The real clock and id generator, handed to the pure domain as its ``now`` and ``new_id``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current instant, tz-aware UTC."""
    return datetime.now(UTC)


def new_uuid() -> str:
    """A fresh event id."""
    return str(uuid.uuid4())
