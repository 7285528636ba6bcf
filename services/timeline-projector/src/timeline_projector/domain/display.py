"""Display hints of timeline entries: icon, colour, label, relative time (pure; ``now`` is passed in).

Dashboards render an entry from these without a table of their own, so every client shows a
result the same way. The relative time depends on the reader's clock, which is why it is
computed per request from the API's injected clock and never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from timeline_projector.domain.projection import Result


@dataclass(frozen=True)
class Hint:
    """How a result is shown."""

    icon: str
    colour: str
    label: str


HINTS: dict[Result, Hint] = {
    Result.SUCCESS: Hint("check-circle", "green", "Success"),
    Result.FAILED: Hint("x-circle", "red", "Failed"),
    Result.SKIPPED: Hint("skip-forward", "grey", "Skipped"),
    Result.RUNNING: Hint("loader", "blue", "Running"),
    Result.AWAITING_APPROVAL: Hint("hourglass", "amber", "Awaiting approval"),
    Result.REJECTED: Hint("ban", "orange", "Rejected"),
    Result.EXPIRED: Hint("clock-off", "grey", "Expired"),
    Result.CANCELLED: Hint("slash", "grey", "Cancelled"),
}


def hint(result: Result, *, test_mode: bool = False) -> Hint:
    """Icon, colour and label of ``result``; a test run's label says so (``Success (test)``)."""
    shown = HINTS[result]
    return Hint(shown.icon, shown.colour, f"{shown.label} (test)") if test_mode else shown


_UNITS = (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600), ("minute", 60))


def relative_time(moment: datetime, *, now: datetime) -> str:
    """``moment`` as people say it from ``now``: ``just now``, ``2 hours ago``, ``yesterday``,
    ``in 5 minutes`` (units truncate: 119 minutes is ``1 hour ago``)."""
    seconds = int((now - moment).total_seconds())
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now"
    unit, count = "minute", 1
    for name, size in _UNITS:
        if seconds >= size:
            unit, count = name, seconds // size
            break
    if unit == "day" and count == 1 and not future:
        return "yesterday"
    amount = f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return f"in {amount}" if future else f"{amount} ago"
