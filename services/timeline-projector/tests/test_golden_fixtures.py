"""Every golden fixture of a projected type decodes and projects; together they make one entry."""

from __future__ import annotations

from datetime import UTC, datetime

from automation_shared.contracts.fixtures import golden_envelopes
from automation_shared.contracts.registry import decode
from timeline_projector.domain.projection import PROJECTED_TYPES, EventMeta, Result, entry_id_of, project


def test_golden_fixtures_of_every_projected_type_project_onto_the_timeline() -> None:
    received = datetime(2026, 11, 1, tzinfo=UTC)
    entries = {}
    projected = set()
    for _name, envelope in golden_envelopes():
        if envelope.type not in PROJECTED_TYPES:
            continue
        payload = decode(envelope, PROJECTED_TYPES[envelope.type])
        entry_id = entry_id_of(payload)
        meta = EventMeta.from_envelope(envelope, received_at=received)
        entries[entry_id] = project(entries.get(entry_id), envelope.type, payload, meta)
        projected.add(envelope.type)
    assert projected == set(PROJECTED_TYPES)
    results = sorted(entry.result for entry in entries.values())
    assert results == sorted([Result.SUCCESS, Result.SKIPPED])
