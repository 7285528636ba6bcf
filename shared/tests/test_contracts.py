"""Envelope, registry and golden fixtures: pure tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from automation_shared.contracts import events as ev
from automation_shared.contracts.envelope import Envelope, parse_envelope
from automation_shared.contracts.fixtures import golden_envelopes
from automation_shared.contracts.registry import EVENT_TYPES, UPCASTERS, build, decode, decode_part
from automation_shared.errors import (
    InvalidPayload,
    MalformedEnvelope,
    OversizedMessage,
    UnknownEventType,
    UnsupportedSchemaVersion,
)
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_every_golden_fixture_decodes_to_its_current_model() -> None:
    seen = set()
    for name, envelope in golden_envelopes():
        if envelope.type in EVENT_TYPES:
            _version, model = EVENT_TYPES[envelope.type]
            payload = decode(envelope, model)
            assert isinstance(payload, model), name
            seen.add(envelope.type)
    assert seen == set(EVENT_TYPES), "every event type needs a golden fixture"


def test_golden_fixture_round_trips_byte_for_byte_through_the_model() -> None:
    for _name, envelope in golden_envelopes():
        again = parse_envelope(envelope.to_bytes(), max_bytes=1_000_000)
        assert again == envelope


# what ingress accepts: no NUL characters, integers within the 100-digit bound
_SAFE_TEXT = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))


@given(
    data=st.dictionaries(st.text(_SAFE_TEXT, min_size=1, max_size=10),
                         st.integers(-(10**30), 10**30) | st.text(_SAFE_TEXT, max_size=20) | st.booleans(),
                         max_size=5),
    subject=st.none() | st.text(_SAFE_TEXT, min_size=1, max_size=30),
    offset_hours=st.integers(min_value=-12, max_value=12),
)
def test_envelope_round_trip_is_lossless_and_time_is_utc(data: dict, subject: str | None, offset_hours: int) -> None:
    local = NOW.astimezone(timezone(timedelta(hours=offset_hours)))
    envelope = Envelope(id="e-1", type="x.happened", source="s", time=local, subject=subject, tenantid="t",
                        data=data)
    parsed = parse_envelope(envelope.to_bytes(), max_bytes=100_000)
    assert parsed == envelope
    assert parsed.time is not None and parsed.time.utcoffset() == timedelta(0) and parsed.time == NOW


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"id": "1", "type": "t", "source": "s"}).encode(), "tenantid"),
        (json.dumps({"id": "1", "source": "s", "tenantid": "a"}).encode(), "type"),
        (json.dumps({"id": "1", "type": "t", "source": "s", "tenantid": "a", "time": "2026-01-01T00:00:00"}).encode(),
         "timezone"),
        (None, "tombstone"),
    ],
)
def test_malformed_envelopes_are_rejected_with_the_reason(raw: bytes | None, reason: str) -> None:
    with pytest.raises(MalformedEnvelope, match=reason):
        parse_envelope(raw, max_bytes=10_000)


def test_oversized_message_is_rejected() -> None:
    raw = Envelope(id="1", type="t", source="s", tenantid="a", data={"blob": "x" * 500}).to_bytes()
    with pytest.raises(OversizedMessage):
        parse_envelope(raw, max_bytes=100)


def test_unknown_fields_are_tolerated() -> None:
    raw = json.dumps({"id": "1", "type": "t", "source": "s", "tenantid": "a", "futurefield": 1}).encode()
    assert parse_envelope(raw, max_bytes=1000).id == "1"


def _finished(**changes: object) -> Envelope:
    payload = ev.RunFinished(run_id="r", automation_id="a", automation_version=1, sequence=3, status="succeeded",
                             duration_ms=5, message="ok")
    envelope = build(payload, event_id="e", source="executor", tenant_id="t", time=NOW)
    return envelope.model_copy(update=changes)


def test_newer_schema_version_is_unsupported() -> None:
    with pytest.raises(UnsupportedSchemaVersion, match="99"):
        decode(_finished(dataschemaversion=99), ev.RunFinished)


def test_unknown_internal_type_and_invalid_payload_are_poison() -> None:
    with pytest.raises(UnknownEventType):
        decode(_finished(type="run.exploded"), ev.RunFinished)
    with pytest.raises(InvalidPayload, match="status"):
        decode(_finished(data={"run_id": "r"}), ev.RunFinished)


def test_upcasters_bring_old_versions_to_the_current_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # pretend run.finished is at version 2, where `message` replaced v1's `summary`
    monkeypatch.setitem(EVENT_TYPES, "run.finished", (2, ev.RunFinished))

    def v1_to_v2(data: dict) -> dict:
        data = dict(data)
        data["message"] = data.pop("summary")
        return data

    monkeypatch.setitem(UPCASTERS, ("run.finished", 1), v1_to_v2)
    old = _finished(dataschemaversion=1, data={"run_id": "r", "automation_id": "a", "automation_version": 1,
                                               "sequence": 3, "status": "failed", "duration_ms": 1, "summary": "boom"})
    assert decode(old, ev.RunFinished).message == "boom"


class FinishedPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    run_id: str
    duration_ms: int


def test_a_part_of_a_payload_decodes_upcast_and_strict_without_validating_the_rest(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # the rest may even be invalid (status), only the part's fields are read
    part = decode_part(_finished(data={"run_id": "r", "duration_ms": 5, "status": "?"}), ev.RunFinished, FinishedPart)
    assert part == FinishedPart(run_id="r", duration_ms=5)
    with pytest.raises(InvalidPayload, match="duration_ms"):
        decode_part(_finished(data={"run_id": "r", "duration_ms": "slow"}), ev.RunFinished, FinishedPart)
    with pytest.raises(UnknownEventType):
        decode_part(_finished(type="run.started"), ev.RunFinished, FinishedPart)
    monkeypatch.setitem(EVENT_TYPES, "run.finished", (2, ev.RunFinished))
    monkeypatch.setitem(UPCASTERS, ("run.finished", 1), lambda data: {**data, "duration_ms": data["ms"]})
    assert decode_part(_finished(dataschemaversion=1, data={"run_id": "r", "ms": 7}), ev.RunFinished,
                       FinishedPart).duration_ms == 7


def test_build_carries_correlation_causation_and_extends_the_chain() -> None:
    root = Envelope(id="root", type="order.created", source="shop", tenantid="t", time=NOW)
    first = build(ev.RunFinished(run_id="r", automation_id="a", automation_version=1, sequence=1, status="failed",
                                 duration_ms=1, message="m"),
                  event_id="child", source="executor", tenant_id="t", time=NOW, cause=root, automation_id="auto-1")
    assert first.correlationid == "root" and first.causationid == "root"
    assert first.automationchain.ids == ("auto-1",) and first.automationchain.hops == 1
    second = build(ev.RunStarted(run_id="r", automation_id="a", automation_version=1, sequence=2, automation_name="n",
                                 category="c", trigger_kind="event", steps_total=1),
                   event_id="grandchild", source="executor", tenant_id="t", time=NOW, cause=first)
    assert second.correlationid == "root" and second.causationid == "child"


def test_asyncapi_document_describes_every_topic_and_event_type() -> None:
    from automation_shared.contracts.asyncapi import asyncapi_document
    from automation_shared.topics import all_topic_specs

    doc = asyncapi_document("ns")
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert addresses == {f"ns.{spec.name}" for spec in all_topic_specs()}
    names = {message["name"] for message in doc["components"]["messages"].values()}
    assert set(EVENT_TYPES) <= names
    assert "TriggerDetected" in doc["components"]["schemas"] and "WebhookAction" in doc["components"]["schemas"]
    json.dumps(doc)  # serialisable
