"""Service settings from the environment (pydantic-settings, prefix ``AUTOMATION_``).

``KAFKA_BOOTSTRAP_SERVERS`` is read without the prefix, as Kafka tooling expects.

The JWT key is a ``SecretStr`` (never printed in reprs or logs) of at least 32 bytes, the HMAC
minimum of RFC 7518 §3.2. The built-in development key is public (it is in this file), so a
service must refuse to start with it unless ``AUTOMATION_DEV_MODE=true`` says this is a local
stack: :func:`check_production_safety`. That check is a separate function, not a validator,
because operator commands (``migrate``, ``create-topics``, ``token``) read the same settings and
never verify a token.

The Kafka security settings (TLS, SASL) are checked in two places for the same reason. A
combination that is wrong for every process — credentials or a CA file the chosen protocol would
silently ignore, SASL without a mechanism — is refused here, when the settings load. What only a
process that connects to Kafka needs (the credentials, a readable CA file) is checked when a client
is built (:func:`automation_shared.kafka_security.kafka_client_options`): the ``migrate``
containers read the same ConfigMap but are given neither the Kafka password nor the CA.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from automation_shared.topics import qualified

DEV_JWT_SECRET = "automation-local-dev-secret-change-me-in-production"
MIN_JWT_SECRET_BYTES = 32

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SASL_PROTOCOLS: frozenset[str] = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
"""Protocols that authenticate with SASL (a mechanism, a username and a password)."""
TLS_PROTOCOLS: frozenset[str] = frozenset({"SSL", "SASL_SSL"})
"""Protocols that encrypt with TLS (the brokers' certificates are verified against the CA file)."""
SASL_FIELDS = ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")


class InsecureSettings(RuntimeError):
    """The settings are only fit for local development and no development flag says that is intended."""


class Settings(BaseSettings):
    """Settings common to every service; each service reads its own instance at start-up."""

    # inputs stay out of validation errors: they would print the JWT key or the Kafka password
    model_config = SettingsConfigDict(env_prefix="AUTOMATION_", extra="ignore", frozen=True, hide_input_in_errors=True)

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
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", description="How the Kafka clients reach the brokers: unencrypted (`PLAINTEXT`), TLS "
                                 "(`SSL`), SASL authentication without TLS (`SASL_PLAINTEXT`) or both (`SASL_SSL`).")
    kafka_sasl_mechanism: KafkaSaslMechanism | None = Field(
        None, description="SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`); required with a `SASL_*` "
                          "protocol, refused with any other.")
    kafka_sasl_username: str | None = Field(
        None, min_length=1, description="SASL user (the KafkaUser's name); required to connect with a `SASL_*` "
                                        "protocol, refused with any other.")
    kafka_sasl_password: SecretStr | None = Field(
        None, min_length=1, description="SASL password (kept out of reprs and error messages); required to "
                                        "connect with a `SASL_*` protocol, refused with any other.")
    kafka_ssl_cafile: Path | None = Field(
        None, description="PEM bundle of the CAs that sign the brokers' certificates (with `SSL`/`SASL_SSL`; "
                          "the system's CAs when unset); refused with a protocol without TLS.")
    database_url: str = Field(
        "postgresql+asyncpg://automation:automation@127.0.0.1:5433/automation",
        description="SQLAlchemy async URL of the Postgres database.",
    )
    partitions: int = Field(6, ge=1, description="Partition count used when creating topics.")
    jwt_secret: SecretStr = Field(
        SecretStr(DEV_JWT_SECRET),
        description=f"HMAC key that signs and verifies bearer tokens (at least {MIN_JWT_SECRET_BYTES} bytes).",
    )
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = Field("HS256", description="JWT signing algorithm (HMAC).")
    jwt_audience: str | None = Field(
        None, min_length=1, description="When set, tokens must carry this `aud` and issued tokens include it."
    )
    jwt_issuer: str | None = Field(
        None, min_length=1, description="When set, tokens must carry this `iss` and issued tokens include it."
    )
    dev_mode: bool = Field(
        False, description="Local development stack: allows the built-in development JWT key. Never in production."
    )
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
    consumer_partition_fetch_bytes: int = Field(
        262_144, ge=1024, description="Bytes a consumer prefetches per partition (bounds each service's memory)."
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
    run_pool_size: int = Field(256, ge=1, le=10_000, description="Steps one executor process performs at once.")
    run_tenant_slots: int = Field(
        64, ge=1, description="Most of those one tenant may hold: a hanging endpoint blocks at most this many."
    )
    runaway_fire_limit: int = Field(
        20, ge=1, le=100_000,
        description="A rule firing for one subject more often than this within `runaway_window_minutes` is set "
                    "to failed (a loop that the automation chain cannot see).")
    schedule_lead_seconds: float = Field(
        30.0, ge=0, le=600,
        description="How long before a slot the trigger-detector decides it (held in the outbox until the slot, "
                    "withdrawn if the rule changes first), so thousands of slots due at one second are published "
                    "on time; 0 decides each slot when it comes due. `skip_if_running` rules are always decided "
                    "when due.")
    runaway_window_minutes: float = Field(10.0, gt=0, le=10_080, description="Window of `runaway_fire_limit`.")
    clock_rate: float = Field(
        1.0, gt=0, le=100_000,
        description="Test stacks only: the services' clock runs this many times faster than real time from "
                    "`clock_epoch`, so schedules and timers come due quickly (refused outside dev mode).")
    clock_epoch: datetime | None = Field(
        None, description="The instant a faster clock starts from (the same on every replica).")
    log_level: str = Field("INFO", description="Log level.")
    # executor: action delivery
    webhook_signing_key: SecretStr | None = Field(
        None, description="Master key the per-tenant webhook signing secrets are derived from (HMAC of the tenant "
                          "id; at least 32 bytes). Unset: the development key, refused outside dev mode.")
    credentials_key: SecretStr | None = Field(
        None, description="Comma list of Fernet keys stored credentials are encrypted with at rest: the first "
                          "encrypts, every one decrypts (rotate by prepending a new key). Unset: the development "
                          "key, refused outside dev mode.")
    egress_allow: str = Field(
        "", max_length=10_000,
        description="Comma list of hosts (`*.example.com`), addresses and CIDRs the SSRF guard lets webhooks and "
                    "notification providers reach although they are loopback, private or link-local.")
    smtp_host: str | None = Field(None, description="SMTP server for email notifications (unset: email fails "
                                                    "clearly).")
    smtp_port: int | None = Field(None, ge=1, le=65_535, description="SMTP port (default 25/587/465 by security).")
    smtp_security: Literal["none", "starttls", "tls"] = Field("starttls", description="SMTP transport security.")
    smtp_username: str | None = Field(None, description="SMTP login.")
    smtp_password: SecretStr | None = Field(None, description="SMTP password.")
    smtp_timeout_seconds: float = Field(15.0, gt=0, le=300, description="Timeout of each SMTP operation.")
    notify_sender: str = Field("automation@localhost", description="From address of email notifications.")
    notify_timeout_seconds: float = Field(15.0, gt=0, le=300, description="Deadline of one notification step.")
    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming-webhook URL (its path is the "
                                                                  "secret).")
    sms_provider_url: str | None = Field(None, description="HTTP provider SMS notifications are POSTed to (JSON).")
    push_provider_url: str | None = Field(None, description="HTTP provider push notifications are POSTed to (JSON).")
    notify_provider_token: SecretStr | None = Field(None, description="Bearer token for the SMS and push providers.")

    @field_validator("jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_JWT_SECRET_BYTES:
            raise ValueError(f"jwt_secret must be at least {MIN_JWT_SECRET_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _kafka_security_consistent(self) -> Settings:
        """Refuse Kafka security settings the chosen protocol would silently ignore or cannot use.

        A password next to ``PLAINTEXT`` most likely means the protocol was forgotten: the service
        would connect unauthenticated wherever a plain listener answers, or fail on the secured one
        with an obscure protocol error, instead of saying which setting is wrong.
        """
        protocol = self.kafka_security_protocol
        chosen = f"{_named('kafka_security_protocol')} is {protocol}"
        if protocol in SASL_PROTOCOLS and self.kafka_sasl_mechanism is None:
            raise ValueError(f"{_named('kafka_sasl_mechanism')} is required: {chosen}, which authenticates with "
                             "SASL; set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
        stray = [name for name in SASL_FIELDS if protocol not in SASL_PROTOCOLS and getattr(self, name) is not None]
        if stray:
            raise ValueError(f"{', '.join(map(_named, stray))} set, but {chosen}, which does not authenticate "
                             "with SASL: set the protocol to SASL_SSL or SASL_PLAINTEXT, or unset them")
        if protocol not in TLS_PROTOCOLS and self.kafka_ssl_cafile is not None:
            raise ValueError(f"{_named('kafka_ssl_cafile')} set, but {chosen}, which does not use TLS: set the "
                             "protocol to SSL or SASL_SSL, or unset it")
        return self

    def topic(self, name: str) -> str:
        """Physical name of the logical topic ``name`` in this namespace."""
        return qualified(name, self.namespace)

    def group(self, consumer: str) -> str:
        """Consumer group id for ``consumer`` in this namespace."""
        return qualified(f"{self.service_name}.{consumer}", self.namespace)

    def db_schema(self, base: str) -> str:
        """Database schema for a service, prefixed by the namespace."""
        return f"{self.namespace.replace('.', '_').replace('-', '_')}_{base}" if self.namespace else base


def env_name(field_name: str) -> str:
    """The environment variable of a field that has no other alias (``AUTOMATION_<FIELD>``)."""
    return f"AUTOMATION_{field_name.upper()}"


def _named(field_name: str) -> str:
    """A field as an error message names it: the field and the variable that sets it."""
    return f"{field_name} ({env_name(field_name)})"


def check_production_safety(settings: Settings) -> None:
    """Refuse settings only fit for a local stack, unless ``dev_mode`` says that is what this is.

    Call it when a service is built, before it accepts any request.

    Raises:
        InsecureSettings: ``jwt_secret`` is the built-in development key and ``dev_mode`` is off.
    """
    if settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET and not settings.dev_mode:
        raise InsecureSettings(
            "AUTOMATION_JWT_SECRET is the built-in development key, which anyone can read in the source: "
            "set AUTOMATION_JWT_SECRET to a secret of at least "
            f"{MIN_JWT_SECRET_BYTES} bytes, or AUTOMATION_DEV_MODE=true on a local development stack"
        )
    if settings.clock_rate != 1.0 and not settings.dev_mode:
        raise InsecureSettings("AUTOMATION_CLOCK_RATE makes the clock run fast: for test stacks only "
                               "(AUTOMATION_DEV_MODE=true)")
