"""Golden JSON fixtures: one envelope per event type and version, stored beside this module.

Every consumer's tests decode all of them, so a contract change that breaks a consumer fails
its tests. ``golden_envelopes()`` yields ``(file name, envelope)`` pairs.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources

from automation_shared.contracts.envelope import Envelope, parse_envelope


def golden_envelopes() -> Iterator[tuple[str, Envelope]]:
    """Every golden fixture, parsed as an envelope."""
    folder = resources.files("automation_shared.contracts") / "golden"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            yield entry.name, parse_envelope(entry.read_bytes(), max_bytes=1_000_000)
