"""Wire types, their current versions, upcasters and typed decoding of envelopes.

Wire names are explicit strings, never Python paths. A breaking change to a payload adds a new
version here plus an upcaster from the previous one; consumers always see the current model.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from automation_shared.contracts import events as ev
from automation_shared.contracts.envelope import (
    MAX_ID_CHARS,
    MAX_SOURCE_CHARS,
    AutomationChain,
    Envelope,
    describe_validation_error,
)
from automation_shared.errors import InvalidPayload, UnknownEventType, UnsupportedSchemaVersion

# wire type -> (current version, model)
EVENT_TYPES: dict[str, tuple[int, type[ev.Payload]]] = {
    "automation.snapshot": (1, ev.AutomationSnapshot),
    "trigger.detected": (1, ev.TriggerDetected),
    "trigger.skipped": (1, ev.TriggerSkipped),
    "run.started": (1, ev.RunStarted),
    "action.completed": (1, ev.ActionCompleted),
    "action.scheduled": (1, ev.ActionScheduled),
    "run.finished": (1, ev.RunFinished),
    "approval.requested": (1, ev.ApprovalRequested),
    "approval.decided": (1, ev.ApprovalDecided),
    "command.issued": (1, ev.CommandIssued),
    "dead_letter.recorded": (1, ev.DeadLetter),
}

# model class -> wire type (the reverse of EVENT_TYPES, for the hot path of ``build``)
_WIRE_TYPES: dict[type[ev.Payload], str] = {model: wire for wire, (_version, model) in EVENT_TYPES.items()}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# (wire type, from version) -> function turning that version's data into version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {}

P = TypeVar("P", bound=ev.Payload)
V = TypeVar("V", bound=BaseModel)


def type_of(model: type[ev.Payload]) -> str:
    """The wire type of a payload model."""
    for wire, (_version, candidate) in EVENT_TYPES.items():
        if candidate is model:
            return wire
    raise UnknownEventType(f"{model.__name__} is not a registered event model")


def upcast(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    """Bring ``data`` of ``version`` up to the current version of ``event_type``.

    Raises:
        UnknownEventType: the type is not defined.
        UnsupportedSchemaVersion: newer than we know, or no upcaster path exists.
    """
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    current, _model = EVENT_TYPES[event_type]
    if version > current:
        raise UnsupportedSchemaVersion(
            f"{event_type} dataschemaversion {version} is newer than supported version {current}"
        )
    while version < current:
        step = UPCASTERS.get((event_type, version))
        if step is None:
            raise UnsupportedSchemaVersion(f"no upcaster for {event_type} from version {version}")
        data = step(data)
        version += 1
    return data


def decode(envelope: Envelope, expected: type[P]) -> P:
    """The typed payload of an internal event, upcast to the current version.

    Raises:
        UnknownEventType, UnsupportedSchemaVersion, InvalidPayload: all poison.
    """
    data = upcast(envelope.type, envelope.dataschemaversion, dict(envelope.data))
    _version, model = EVENT_TYPES[envelope.type]
    if model is not expected:
        raise UnknownEventType(f"expected {type_of(expected)}, got {envelope.type!r}")
    try:
        return expected.model_validate(data)
    except ValidationError as exc:
        raise InvalidPayload(f"{envelope.type}: {describe_validation_error(exc)}") from exc


def decode_part(envelope: Envelope, expected: type[ev.Payload], part: type[V]) -> V:
    """Only the fields ``part`` declares of an internal event's payload of type ``expected``,
    upcast like :func:`decode` and as strict about them, the rest left unread.

    For consumers that keep a few fields of a large event (a trigger's context and action chain
    are most of its bytes): validating the whole payload only to drop it was a twentieth of the
    trigger-detector's CPU. ``part`` must be a pydantic model that ignores extra fields and whose
    fields are fields of ``expected``.

    Raises:
        UnknownEventType, UnsupportedSchemaVersion, InvalidPayload: all poison.
    """
    data = upcast(envelope.type, envelope.dataschemaversion, dict(envelope.data))
    _version, model = EVENT_TYPES[envelope.type]
    if model is not expected:
        raise UnknownEventType(f"expected {type_of(expected)}, got {envelope.type!r}")
    try:
        return part.model_validate(data)
    except ValidationError as exc:
        raise InvalidPayload(f"{envelope.type}: {describe_validation_error(exc)}") from exc


def build(
    payload: ev.Payload,
    *,
    event_id: str,
    source: str,
    tenant_id: str,
    time: datetime,
    subject: str | None = None,
    cause: Envelope | None = None,
    automation_id: str | None = None,
) -> Envelope:
    """Wrap a payload in an envelope, carrying correlation/causation from ``cause``.

    When ``automation_id`` is given the automation chain is extended by it (loop detection).

    The payload is a validated model and ``cause`` a validated envelope, so the envelope is
    assembled without validating it again (this runs for every decision: thousands per second);
    only the attributes that do not come from those are checked here.

    Raises:
        ValueError: ``time`` is naive, or ``event_id``/``source`` is empty or too long.
    """
    if time.tzinfo is None:
        raise ValueError("time must carry a timezone offset")
    if not 0 < len(event_id) <= MAX_ID_CHARS or not 0 < len(source) <= MAX_SOURCE_CHARS:
        raise ValueError(f"event id and source must be 1-{MAX_ID_CHARS}/{MAX_SOURCE_CHARS} characters")
    wire = _WIRE_TYPES.get(type(payload)) or type_of(type(payload))
    chain = cause.automationchain if cause is not None else AutomationChain()
    if cause is not None and automation_id is not None:
        chain = chain.extended(automation_id)
    return Envelope.model_construct(
        id=event_id,
        type=wire,
        source=source,
        specversion="1.0",
        time=time.astimezone(UTC),
        subject=subject,
        tenantid=tenant_id,
        dataschemaversion=EVENT_TYPES[wire][0],
        datacontenttype="application/json",
        correlationid=(cause.correlationid or cause.id) if cause is not None else event_id,
        causationid=cause.id if cause is not None else None,
        automationchain=chain,
        data=payload.model_dump(mode="json"),
    )
