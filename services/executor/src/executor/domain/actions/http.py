"""HTTP requests of actions (webhooks, Slack, SMS and push providers) and how their answers are judged. Pure.

Classified once, here: 2xx completed; 408, 425, 429 and 5xx retryable (the receiver may
answer differently later); any other status a permanent failure; timeouts and connection
errors retryable (no answer at all). Only the head of an answer is ever read
(:data:`RESPONSE_CAP_BYTES`, by the adapter) and a shorter excerpt is recorded, decoded so
that any bytes — invalid UTF-8, NUL — fit a Postgres text column and a JSON event.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from automation_shared.contracts.rules import is_platform_header

from executor.domain.actions.base import REDACTED, ActionRefused, clean_text, completed, failed, is_secret_name
from executor.domain.runs import StepOutcome

RESPONSE_CAP_BYTES: Final = 64 * 1024
"""Most bytes of an answer read: enough to let a keep-alive connection be reused, never a 5 GB body."""

EXCERPT_CHARS: Final = 1000
"""Characters of an answer recorded in the step's result."""

RETRYABLE_STATUSES: Final = frozenset({408, 425, 429})


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request an action sends; ``timeout_seconds`` bounds the whole exchange."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    timeout_seconds: float

    def shown(self, *, hide_path: bool = False) -> dict[str, Any]:
        """The request as results and dry runs show it: credentials redacted (``hide_path`` for URLs
        whose path is itself the secret, such as Slack incoming webhooks)."""
        return {"method": self.method, "url": redact_url(self.url, hide_path=hide_path),
                "headers": {name: REDACTED if is_secret_name(name) else value for name, value in self.headers}}


@dataclass(frozen=True)
class HttpAnswer:
    """What came back: the status and the head of the body (at most :data:`RESPONSE_CAP_BYTES`)."""

    status: int
    head: bytes
    truncated: bool
    """The body was longer than what was read."""
    duration_ms: int


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status may turn out differently on a later attempt (408, 425, 429, 5xx)."""
    return status in RETRYABLE_STATUSES or status >= 500


def excerpt(head: bytes) -> str:
    """The recorded excerpt of an answer: UTF-8 with replacements, no NUL, at most :data:`EXCERPT_CHARS`."""
    text: str = clean_text(head[: EXCERPT_CHARS * 4].decode("utf-8", "replace"), EXCERPT_CHARS)
    return text


def answer_result(answer: HttpAnswer) -> dict[str, Any]:
    """The recorded part of an answer."""
    return {"status_code": answer.status, "response_excerpt": excerpt(answer.head),
            "response_truncated": answer.truncated or len(answer.head) > EXCERPT_CHARS}


def outcome_of_answer(answer: HttpAnswer, extra: Mapping[str, Any] | None = None) -> StepOutcome:
    """Judge an answer: 2xx completed; 408/425/429/5xx retryable; anything else permanent."""
    result = {**(extra or {}), **answer_result(answer)}
    if 200 <= answer.status < 300:
        return completed(result, duration_ms=answer.duration_ms)
    return failed(f"HTTP {answer.status}", retryable=is_retryable_status(answer.status),
                  duration_ms=answer.duration_ms, result=result)


def outcome_of_transport_error(error: str, *, duration_ms: int, extra: Mapping[str, Any] | None = None
                               ) -> StepOutcome:
    """No answer (timeout, refused or reset connection, DNS failure): a later attempt may get one."""
    return failed(error, retryable=True, duration_ms=duration_ms, result=extra)


def check_header(name: str, value: str) -> None:
    """Refuse a header a rule may not send: one the platform owns, or a value HTTP cannot carry.

    Raises:
        ActionRefused: naming the header and what is wrong with it.
    """
    if is_platform_header(name):
        raise ActionRefused(f"header {name!r} is set by the platform: webhook-*, content-*, proxy-*, host and "
                            "hop-by-hop headers cannot be set by a rule")
    if not name.isascii() or not name or any(char in name for char in ' \t\r\n:"(),/;<=>?@[\\]{}'):
        raise ActionRefused(f"header name {name!r} is not a valid HTTP header name")
    if not value.isascii():
        raise ActionRefused(f"header {name!r} has a non-ASCII value; HTTP header values must be ASCII "
                            "(percent- or base64-encode the value)")
    if any(ord(char) < 0x20 and char != "\t" or ord(char) == 0x7F for char in value):
        raise ActionRefused(f"header {name!r} has a control character (such as a line break) in its value")


def redact_url(url: str, *, hide_path: bool = False) -> str:
    """``url`` without its password, the values of credential-looking query parameters, and
    (``hide_path``) its path."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = f"{parts.username}:{REDACTED}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return "[unparsable URL]"
    query = urlencode([(key, REDACTED if is_secret_name(key) else value)
                       for key, value in parse_qsl(parts.query, keep_blank_values=True)])
    path = "/…" if hide_path and parts.path not in ("", "/") else parts.path
    return urlunsplit((parts.scheme, netloc, path, "" if hide_path else query, ""))
