"""The CloudEvents 1.0 envelope every message on every topic carries (docs/architecture.md, "Contracts").

Wire format is structured-mode CloudEvents JSON in the Kafka record value. Models are frozen
and ignore unknown fields so consumers tolerate additions by newer producers. Record values are
decoded with the strict loader of :mod:`automation_shared.contracts.jsonsafe`: anything that
cannot be decoded, or that Postgres could not store later (NaN, NUL, unpaired surrogates, too
deep), is poison at the door rather than a crash halfway through a handler.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from automation_shared.contracts.jsonsafe import MAX_DEPTH, UnsafeJson, loads_strict
from automation_shared.errors import MalformedEnvelope, OversizedMessage

MAX_CHAIN_HOPS = 10
MAX_ID_CHARS = 200
MAX_SOURCE_CHARS = 500
MAX_TENANT_CHARS = 200


class AutomationChain(BaseModel):
    """Which automations led to this event, for loop detection."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ids: tuple[str, ...] = Field((), description="Automation ids that caused this event, oldest first.")
    hops: int = Field(0, ge=0, description="How many automation hops led to this event.")

    def extended(self, automation_id: str) -> AutomationChain:
        """The chain of an event caused by ``automation_id`` acting on this one."""
        return AutomationChain(ids=(*self.ids, automation_id), hops=self.hops + 1)


class Envelope(BaseModel):
    """A CloudEvents 1.0 event with the platform's extension attributes."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1, max_length=MAX_ID_CHARS, description="Event id; with `source`, the dedupe key.")
    type: str = Field(min_length=1, max_length=200, description="Event type, e.g. `trigger.detected`.")
    source: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS, description="Producing service or upstream system.")
    specversion: Literal["1.0"] = Field("1.0", description="CloudEvents spec version.")
    time: datetime | None = Field(None, description="When it happened (tz-aware, normalised to UTC).")
    subject: str | None = Field(None, max_length=500, description="Entity the event is about.")
    tenantid: str = Field(min_length=1, max_length=MAX_TENANT_CHARS, description="Tenant (CloudEvents extension).")
    dataschemaversion: int = Field(1, ge=1, description="Version of the `data` schema for this type.")
    datacontenttype: str = Field("application/json", description="Content type of `data`.")
    correlationid: str | None = Field(None, description="Id of the root event of the chain.")
    causationid: str | None = Field(None, description="Id of the event that caused this one.")
    automationchain: AutomationChain = Field(
        default_factory=AutomationChain, description="Automations that led here (loop detection)."
    )
    data: dict[str, Any] = Field(default_factory=dict, description="The type's payload.")

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("time must carry a timezone offset")
        try:
            return value.astimezone(UTC)
        except OverflowError as exc:  # e.g. 0001-01-01T00:00:00+01:00: before year 1 in UTC
            raise ValueError("time is out of range once normalised to UTC") from exc

    @property
    def dedupe_key(self) -> str:
        """``source`` + ``id``: what every consumer deduplicates on."""
        return f"{self.source}\x1f{self.id}"

    def to_bytes(self) -> bytes:
        """Structured-mode CloudEvents JSON."""
        return self.model_dump_json(exclude_none=True).encode()


def parse_envelope(raw: bytes | None, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Envelope:
    """Decode one Kafka record value into an envelope.

    Raises:
        OversizedMessage: the value is larger than ``max_bytes``.
        MalformedEnvelope: not UTF-8 JSON, unsafe JSON (non-finite numbers, integers over
            ``MAX_INT_DIGITS`` digits, nesting over ``max_depth``, NUL or unpaired surrogates in
            a string or key), not an object, or required attributes missing/invalid. No other
            exception escapes: every decode failure is poison, dead-lettered at once.
    """
    if raw is None:
        raise MalformedEnvelope("empty record value (tombstone) where an event was expected")
    if len(raw) > max_bytes:
        raise OversizedMessage(f"message of {len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        document = loads_strict(raw, max_depth=max_depth)
    except UnsafeJson as exc:
        raise MalformedEnvelope(str(exc) if exc.reason.startswith("not valid") else f"unsafe JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise MalformedEnvelope("envelope must be a JSON object")
    try:
        return Envelope.model_validate(document)
    except ValidationError as exc:
        raise MalformedEnvelope(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each invalid field and why, e.g. ``tenantid: Field required``."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"]) or "<root>"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)

