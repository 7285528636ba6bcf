"""Which failures are the infrastructure's (redeliver, never dead-letter) and which are the message's.

A consumer that dead-letters a valid event because Postgres restarted has lost that event; a
consumer that redelivers forever because handler code raised ``FileNotFoundError`` has stalled
its partition. So the line is drawn by *what failed*, not by exception class alone:

* Postgres errors by SQLSTATE: connection exceptions (class 08), insufficient resources (53:
  too many connections, out of memory, disk full), operator intervention (57: shutdown,
  restart, "cannot connect now", statement cancelled), transaction rollbacks (40:
  serialization failure, deadlock), a read-only transaction after a failover (25006) and lock
  timeouts (55P03). A connection SQLAlchemy invalidated is transient whatever the code.
* Kafka errors that aiokafka marks ``retriable`` (broker down, leader moved, timeouts).
* Network-level ``ConnectionError`` / ``TimeoutError`` and our own :class:`TransientError`.

Everything else (including ``OSError`` subclasses such as ``FileNotFoundError`` raised by
handler code) is the message's problem: retried a bounded number of times, then dead-lettered.
"""

from __future__ import annotations

import socket

import sqlalchemy as sa
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

from automation_shared.errors import TransientError

TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})
TRANSIENT_SQLSTATES = frozenset({"25006", "55P03"})


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE carried by a (possibly wrapped) Postgres error, if any."""
    for candidate in _chain(error):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str) and len(code) == 5:
            return code
    return None


def is_transient(error: BaseException) -> bool:
    """True when ``error`` says the infrastructure is unavailable, not that the message is bad."""
    for candidate in _chain(error):
        if isinstance(candidate, TransientError | ConnectionError | TimeoutError | socket.gaierror):
            return True
        if isinstance(candidate, KafkaConnectionError | KafkaTimeoutError):
            return True
        if isinstance(candidate, KafkaError) and candidate.retriable:
            return True
        if isinstance(candidate, sa.exc.DBAPIError) and candidate.connection_invalidated:
            return True
        if isinstance(candidate, sa.exc.TimeoutError):  # connection pool exhausted for too long
            return True
    code = sqlstate_of(error)
    return code is not None and (code[:2] in TRANSIENT_SQLSTATE_CLASSES or code in TRANSIENT_SQLSTATES)


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and what it wraps (SQLAlchemy's ``orig``, explicit ``__cause__``), bounded."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(seen) < 8 and all(current is not s for s in seen):
        seen.append(current)
        wrapped = getattr(current, "orig", None)
        current = wrapped if isinstance(wrapped, BaseException) else current.__cause__
    return seen
