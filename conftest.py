"""Where the integration tests find Kafka and Postgres: the one switch, ``AUTOMATION_TEST_INFRA``.

- ``stack``: the environment already points at them (``KAFKA_BOOTSTRAP_SERVERS``,
  ``AUTOMATION_DATABASE_URL``). ``make test`` (deploy/local/test.sh) starts the local stack and
  sets this: it is what CI runs, and it needs no Docker.
- ``containers``: start Kafka and Postgres with testcontainers (its Kafka and Postgres modules)
  for the session and point the environment at them. Needs a Docker daemon.
- ``auto`` (the default): ``containers`` when a Docker daemon answers and neither variable above
  is set, ``stack`` otherwise.

So on a machine with Docker, ``.venv/bin/pytest`` alone runs the suite against containers. Tests
that drive the local stack itself (crash-stopping its Postgres) skip without it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

SWITCH = "AUTOMATION_TEST_INFRA"
KAFKA_IMAGE = "confluentinc/cp-kafka:7.9.0"  # the image testcontainers' Kafka module drives (KRaft)
POSTGRES_IMAGE = "postgres:15"

_containers: list[Any] = []


def docker_available() -> bool:
    """Whether a Docker daemon answers (the docker package comes with testcontainers)."""
    try:
        import docker
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - no client library, no socket, no daemon: all mean "no Docker"
        return False


def infra_mode() -> str:
    """``stack`` or ``containers``, from the switch (see the module docstring)."""
    mode = os.environ.get(SWITCH, "auto")
    if mode not in {"auto", "stack", "containers"}:
        raise pytest.UsageError(f"{SWITCH} must be auto, stack or containers, not {mode!r}")
    if mode != "auto":
        return mode
    configured = "KAFKA_BOOTSTRAP_SERVERS" in os.environ or "AUTOMATION_DATABASE_URL" in os.environ
    return "containers" if not configured and docker_available() else "stack"


def start_containers() -> dict[str, str]:
    """Start Kafka and Postgres containers; the environment the services and fixtures read."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    kafka = KafkaContainer(KAFKA_IMAGE).with_kraft().with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    postgres = PostgresContainer(POSTGRES_IMAGE, username="automation", password="automation", dbname="automation",
                                 driver="asyncpg")
    for container in (kafka, postgres):
        container.start()
        _containers.append(container)
    return {"KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
            "AUTOMATION_DATABASE_URL": postgres.get_connection_url(),
            "AUTOMATION_DEV_MODE": "true"}


def pytest_configure(config: pytest.Config) -> None:
    if infra_mode() == "containers":
        os.environ.update(start_containers())


def pytest_unconfigure(config: pytest.Config) -> None:
    while _containers:
        _containers.pop().stop()
