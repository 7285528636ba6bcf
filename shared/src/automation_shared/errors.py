"""Typed errors raised by the shared plumbing.

A ``PoisonMessage`` can never succeed however often it is retried: consumers dead-letter it
at once. Anything else raised by a handler is retried with backoff before it is dead-lettered,
unless it is a ``TransientError`` (infrastructure), which is retried until it succeeds.
"""

from __future__ import annotations


class AutomationError(Exception):
    """Base class of every error raised on purpose by this platform."""


class PoisonMessage(AutomationError):
    """A message that can never be processed: malformed, invalid or of an unknown version."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedEnvelope(PoisonMessage):
    """The bytes are not a valid CloudEvents envelope (bad JSON, missing tenant or type, …)."""


class OversizedMessage(PoisonMessage):
    """The message exceeds the configured maximum size."""


class OversizedOutgoing(PoisonMessage):
    """Handling the message would emit a record larger than Kafka accepts; it is refused up front."""


class UnknownEventType(PoisonMessage):
    """An internal topic carried an event type this platform does not define."""


class UnsupportedSchemaVersion(PoisonMessage):
    """The ``dataschemaversion`` of an event has no model and no upcaster."""


class InvalidPayload(PoisonMessage):
    """The ``data`` of a known event type does not match its model."""


class TransientError(AutomationError):
    """Infrastructure is unavailable; the message must be redelivered, never dead-lettered."""
