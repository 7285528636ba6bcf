"""The real clock and id generator, handed to pure domain functions as their ``now`` and ``new_id``.

Routes, handlers and loops receive these as parameters (tests pass fixed ones); nothing else in
the services calls ``datetime.now()`` or ``uuid4()``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current instant, tz-aware UTC."""
    return datetime.now(UTC)


def new_uuid() -> str:
    """A fresh event id."""
    return str(uuid.uuid4())
