"""Wire types, their current versions, upcasters and typed decoding of envelopes.

Wire names are explicit strings, never Python paths. A breaking change to a payload adds a new
version here plus an upcaster from the previous one; consumers always see the current model.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from automation_shared.contracts import events as ev
from automation_shared.contracts.envelope import Envelope, describe_validation_error
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

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

# (wire type, from version) -> function turning that version's data into version + 1
UPCASTERS: dict[tuple[str, int], Upcaster] = {}

P = TypeVar("P", bound=ev.Payload)


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
    """
    chain = cause.automationchain if cause is not None else None
    if chain is not None and automation_id is not None:
        chain = chain.extended(automation_id)
    version, _model = EVENT_TYPES[type_of(type(payload))]
    return Envelope(
        id=event_id,
        type=type_of(type(payload)),
        source=source,
        time=time,
        subject=subject,
        tenantid=tenant_id,
        dataschemaversion=version,
        correlationid=(cause.correlationid or cause.id) if cause is not None else event_id,
        causationid=cause.id if cause is not None else None,
        **({"automationchain": chain} if chain is not None else {}),
        data=payload.model_dump(mode="json"),
    )
