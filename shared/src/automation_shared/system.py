"""The real clock and id generator, handed to pure domain functions as their ``now`` and ``new_id``.

Routes, handlers and loops receive these as parameters (tests pass fixed ones); nothing else in
the services calls ``datetime.now()`` or ``uuid4()``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime


def utcnow() -> datetime:
    """The current instant, tz-aware UTC."""
    return datetime.now(UTC)


def clock_of(rate: float, epoch: datetime | None) -> Callable[[], datetime]:
    """The clock services read: :func:`utcnow`, or — on test stacks — one running ``rate`` times
    faster from ``epoch`` (every replica given the same epoch reads the same time)."""
    if rate == 1.0:
        return utcnow
    start = epoch or utcnow()

    def faster() -> datetime:
        return start + (utcnow() - start) * rate

    return faster


def new_uuid() -> str:
    """A fresh event id."""
    return str(uuid.uuid4())
