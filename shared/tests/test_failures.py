"""Which failures are the infrastructure's: classified by SQLSTATE and by what failed, not by type alone."""

from __future__ import annotations

import socket

import pytest
import sqlalchemy as sa
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, NotLeaderForPartitionError
from automation_shared.errors import InvalidPayload, TransientError
from automation_shared.failures import is_transient, sqlstate_of


class FakePgError(Exception):
    """Stands in for the asyncpg error SQLAlchemy wraps: it carries ``sqlstate``."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"pg error {sqlstate}")
        self.sqlstate = sqlstate


def wrapped(sqlstate: str, *, invalidated: bool = False) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError("SELECT 1", {}, FakePgError(sqlstate), connection_invalidated=invalidated)


@pytest.mark.parametrize(("sqlstate", "what"), [
    ("08006", "connection failure"),
    ("08001", "cannot establish connection"),
    ("57P01", "admin shutdown (pg_ctl stop)"),
    ("57P02", "crash shutdown"),
    ("57P03", "cannot connect now (recovery)"),
    ("53300", "too many connections"),
    ("40001", "serialization failure"),
    ("40P01", "deadlock"),
    ("25006", "read-only transaction after failover"),
    ("55P03", "lock timeout"),
])
def test_postgres_infrastructure_errors_are_transient(sqlstate: str, what: str) -> None:
    assert is_transient(wrapped(sqlstate)), what
    assert sqlstate_of(wrapped(sqlstate)) == sqlstate


@pytest.mark.parametrize("sqlstate", ["23505", "22P02", "22P05", "42P01", "23502"])
def test_postgres_errors_about_the_data_are_not_transient(sqlstate: str) -> None:
    assert not is_transient(wrapped(sqlstate))


def test_an_invalidated_connection_is_transient_whatever_the_code() -> None:
    assert is_transient(wrapped("XX000", invalidated=True))


def test_network_and_kafka_outages_are_transient() -> None:
    assert is_transient(ConnectionRefusedError(111, "refused"))
    assert is_transient(TimeoutError())
    assert is_transient(socket.gaierror("no such host"))
    assert is_transient(KafkaConnectionError())
    assert is_transient(NotLeaderForPartitionError())
    assert is_transient(TransientError("down"))
    assert is_transient(sa.exc.TimeoutError("pool exhausted"))


def test_handler_bugs_and_non_infrastructure_oserrors_are_not_transient() -> None:
    assert not is_transient(FileNotFoundError(2, "missing"))
    assert not is_transient(PermissionError(13, "denied"))
    assert not is_transient(OSError("generic"))
    assert not is_transient(ValueError("bug"))
    assert not is_transient(KeyError("bug"))
    assert not is_transient(MessageSizeTooLargeError())
    assert not is_transient(InvalidPayload("bad"))


def test_a_cause_chain_is_followed() -> None:
    try:
        try:
            raise ConnectionResetError("reset")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert is_transient(outer)
