"""Service settings from the environment (pydantic-settings, prefix ``AUTOMATION_``).

``KAFKA_BOOTSTRAP_SERVERS`` is read without the prefix, as Kafka tooling expects.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from automation_shared.topics import qualified

DEV_JWT_SECRET = "automation-local-dev-secret-change-me-in-production"


class Settings(BaseSettings):
    """Settings common to every service; each service reads its own instance at start-up."""

    model_config = SettingsConfigDict(env_prefix="AUTOMATION_", extra="ignore", frozen=True)

    service_name: str = Field("automation", description="Name of this service (logs, metrics, consumer groups).")
    namespace: str = Field(
        "",
        description="Prefix for topics, consumer groups and DB schemas so parallel stacks never collide.",
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "AUTOMATION_KAFKA_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers.",
    )
    database_url: str = Field(
        "postgresql+asyncpg://automation:automation@127.0.0.1:5433/automation",
        description="SQLAlchemy async URL of the Postgres database.",
    )
    partitions: int = Field(6, ge=1, description="Partition count used when creating topics.")
    jwt_secret: str = Field(DEV_JWT_SECRET, description="HS256 key that signs and verifies bearer tokens.")
    jwt_algorithm: str = Field("HS256", description="JWT signing algorithm.")
    max_message_bytes: int = Field(1_000_000, description="Largest accepted event (bytes); larger is dead-lettered.")
    max_handler_attempts: int = Field(3, ge=1, description="Attempts of a failing handler before dead-lettering.")
    retry_backoff_seconds: float = Field(0.2, ge=0, description="First backoff between handler attempts (doubles).")
    outbox_retention_hours: float = Field(24.0, gt=0, description="Published outbox rows are kept this long.")
    outbox_poll_seconds: float = Field(0.2, gt=0, description="Outbox relay poll interval when idle.")
    outbox_batch_size: int = Field(500, ge=1, le=10_000, description="Outbox rows the relay sends per pass.")
    outbox_max_attempts: int = Field(
        5, ge=1, description="Sends of an outbox row Kafka refuses before the row is parked with its error."
    )
    consumer_batch_max: int = Field(
        500, ge=1, le=10_000, description="Most records one partition's batch handles in one transaction."
    )
    consumer_idle_poll_ms: int = Field(
        200, ge=1, description="How long an idle consumer waits for records; records present are taken at once."
    )
    infra_backoff_seconds: float = Field(
        0.5, gt=0, description="First pause of a partition after an infrastructure error (doubles, with jitter)."
    )
    infra_backoff_max_seconds: float = Field(30.0, gt=0, description="Longest pause after infrastructure errors.")
    inbox_retention_hours: float = Field(
        168.0, gt=0, description="Inbox rows are kept this long: the window in which a re-sent event is a no-op."
    )
    run_lease_seconds: float = Field(
        30.0, gt=0, description="How long a run driver holds a run; a crashed driver's runs resume after it."
    )
    log_level: str = Field("INFO", description="Log level.")

    def topic(self, name: str) -> str:
        """Physical name of the logical topic ``name`` in this namespace."""
        return qualified(name, self.namespace)

    def group(self, consumer: str) -> str:
        """Consumer group id for ``consumer`` in this namespace."""
        return qualified(f"{self.service_name}.{consumer}", self.namespace)

    def db_schema(self, base: str) -> str:
        """Database schema for a service, prefixed by the namespace."""
        return f"{self.namespace.replace('.', '_').replace('-', '_')}_{base}" if self.namespace else base
