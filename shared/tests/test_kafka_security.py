"""Kafka TLS and SASL: the settings, the connection options, and that every client is built with them.

No Kafka needed: clients are constructed, inspected and closed without being started. The
settings refuse what the chosen protocol would ignore; :func:`kafka_client_options` turns the rest
into aiokafka's arguments, or refuses missing credentials and CA files it cannot load.
"""

from __future__ import annotations

import ast
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import certifi
import pytest
from aiokafka import AIOKafkaClient
from automation_shared import testing, topics
from automation_shared.cli import admin_client
from automation_shared.kafka_security import KafkaSecurityError, kafka_client_options
from automation_shared.messaging import BatchConsumer, KafkaPublisher, Subscription, envelope_itself
from automation_shared.settings import Settings, env_name
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[2]
SECURITY_FIELDS = ("kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username",
                   "kafka_sasl_password", "kafka_ssl_cafile")
PASSWORD = "scram-password-not-for-logs"
CLIENT_CLASSES = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}


@pytest.fixture(autouse=True)
def _no_security_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the shell running the tests sets, each test states its own security settings."""
    for field_name in SECURITY_FIELDS:
        monkeypatch.delenv(env_name(field_name), raising=False)


@pytest.fixture
def cafile(tmp_path: Path) -> Path:
    """A one-certificate CA bundle, as Strimzi's ``ca.crt`` is (a real CA from certifi's bundle stands in)."""
    bundle = Path(certifi.where()).read_text()
    end = "-----END CERTIFICATE-----\n"
    start = bundle.index("-----BEGIN CERTIFICATE-----")
    path = tmp_path / "ca.crt"
    path.write_text(bundle[start:bundle.index(end, start) + len(end)])
    return path


def scram(**overrides: Any) -> Settings:
    """SASL_SSL with SCRAM-SHA-512, as the prod overlay configures a service; ``overrides`` change fields."""
    values: dict[str, Any] = {"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "SCRAM-SHA-512",
                              "kafka_sasl_username": "automation-executor", "kafka_sasl_password": PASSWORD}
    return Settings(**{**values, **overrides})


def loaded_ca(context: ssl.SSLContext) -> list[bytes]:
    return cast(list[bytes], context.get_ca_certs(binary_form=True))


# ------------------------------------------------------------------------------------ settings


def test_by_default_kafka_is_plaintext_without_sasl() -> None:
    settings = Settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert all(getattr(settings, name) is None for name in SECURITY_FIELDS[1:])


def test_the_security_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, cafile: Path) -> None:
    for name, value in (("AUTOMATION_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
                        ("AUTOMATION_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
                        ("AUTOMATION_KAFKA_SASL_USERNAME", "automation-executor"),
                        ("AUTOMATION_KAFKA_SASL_PASSWORD", PASSWORD), ("AUTOMATION_KAFKA_SSL_CAFILE", str(cafile))):
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism, settings.kafka_sasl_username,
            settings.kafka_ssl_cafile) == ("SASL_SSL", "SCRAM-SHA-512", "automation-executor", cafile)
    assert settings.kafka_sasl_password is not None and settings.kafka_sasl_password.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())


PROTOCOL = "kafka_security_protocol (AUTOMATION_KAFKA_SECURITY_PROTOCOL)"


@pytest.mark.parametrize(("fields", "named"), [
    ({"kafka_security_protocol": "SASL_SSL"}, ["kafka_sasl_mechanism (AUTOMATION_KAFKA_SASL_MECHANISM)", PROTOCOL]),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u", "kafka_sasl_password": "p"},
     ["kafka_sasl_mechanism (AUTOMATION_KAFKA_SASL_MECHANISM)", PROTOCOL]),
    ({"kafka_sasl_username": "u", "kafka_sasl_password": "p"},
     ["kafka_sasl_username (AUTOMATION_KAFKA_SASL_USERNAME)", "kafka_sasl_password (AUTOMATION_KAFKA_SASL_PASSWORD)",
      f"{PROTOCOL} is PLAINTEXT"]),
    ({"kafka_sasl_password": "p"}, ["kafka_sasl_password (AUTOMATION_KAFKA_SASL_PASSWORD)", PROTOCOL]),
    ({"kafka_sasl_mechanism": "SCRAM-SHA-512"}, ["kafka_sasl_mechanism (AUTOMATION_KAFKA_SASL_MECHANISM)", PROTOCOL]),
    ({"kafka_security_protocol": "SSL", "kafka_sasl_username": "u"},
     ["kafka_sasl_username (AUTOMATION_KAFKA_SASL_USERNAME)", f"{PROTOCOL} is SSL"]),
    ({"kafka_ssl_cafile": "/etc/automation/kafka-ca/ca.crt"},
     ["kafka_ssl_cafile (AUTOMATION_KAFKA_SSL_CAFILE)", f"{PROTOCOL} is PLAINTEXT"]),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN", "kafka_ssl_cafile": "/ca.crt"},
     ["kafka_ssl_cafile (AUTOMATION_KAFKA_SSL_CAFILE)", f"{PROTOCOL} is SASL_PLAINTEXT"]),
    ({"kafka_security_protocol": "TLS"}, ["kafka_security_protocol"]),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "GSSAPI"}, ["kafka_sasl_mechanism"]),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": ""},
     ["kafka_sasl_username"]),
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN", "kafka_sasl_password": ""},
     ["kafka_sasl_password"]),
])
def test_settings_refuse_what_the_protocol_would_ignore_or_cannot_use(fields: dict[str, Any],
                                                                      named: list[str]) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(**fields)
    for name in named:
        assert name in str(refused.value)


def test_a_refused_password_is_not_printed() -> None:
    """The message a crashing service logs leaves the inputs out (it would show the password)."""
    with pytest.raises(ValidationError) as refused:
        Settings(kafka_sasl_username="automation-executor", kafka_sasl_password=PASSWORD)
    assert PASSWORD not in str(refused.value) and "kafka_sasl_password" in str(refused.value)


# ------------------------------------------------------------------------------------ client options


def test_plaintext_options_have_no_sasl_and_no_tls() -> None:
    settings = Settings()
    assert kafka_client_options(settings) == {"bootstrap_servers": settings.kafka_bootstrap_servers,
                                              "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_options_authenticate_and_verify_the_brokers_against_the_ca_file(cafile: Path) -> None:
    settings = scram(kafka_ssl_cafile=cafile)
    options = kafka_client_options(settings)
    context = options.pop("ssl_context")
    assert options == {"bootstrap_servers": settings.kafka_bootstrap_servers, "security_protocol": "SASL_SSL",
                       "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "automation-executor",
                       "sasl_plain_password": PASSWORD}
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert loaded_ca(context) == [ssl.PEM_cert_to_DER_cert(cafile.read_text())], "exactly the CA of the file"
    assert kafka_client_options(settings)["ssl_context"] is not context, "each client reads the (rotated) file"


def test_sasl_plaintext_options_authenticate_without_tls() -> None:
    options = kafka_client_options(scram(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN"))
    assert options["security_protocol"] == "SASL_PLAINTEXT" and options["sasl_mechanism"] == "PLAIN"
    assert options["sasl_plain_username"] == "automation-executor" and options["sasl_plain_password"] == PASSWORD
    assert "ssl_context" not in options


def test_ssl_options_without_a_ca_file_verify_against_the_system_cas() -> None:
    options = kafka_client_options(Settings(kafka_security_protocol="SSL"))
    assert set(options) == {"bootstrap_servers", "security_protocol", "ssl_context"}
    assert options["security_protocol"] == "SSL"
    assert isinstance(options["ssl_context"], ssl.SSLContext) and options["ssl_context"].check_hostname


@pytest.mark.parametrize(("unset", "named"), [
    ({"kafka_sasl_username": None}, ["AUTOMATION_KAFKA_SASL_USERNAME"]),
    ({"kafka_sasl_password": None}, ["AUTOMATION_KAFKA_SASL_PASSWORD"]),
    ({"kafka_sasl_username": None, "kafka_sasl_password": None},
     ["AUTOMATION_KAFKA_SASL_USERNAME and AUTOMATION_KAFKA_SASL_PASSWORD"]),
])
def test_a_client_is_refused_without_sasl_credentials(unset: dict[str, None], named: list[str],
                                                       cafile: Path) -> None:
    settings = scram(kafka_ssl_cafile=cafile, **unset)  # valid settings: a migrate container has no password
    with pytest.raises(KafkaSecurityError) as refused:
        kafka_client_options(settings)
    assert all(name in str(refused.value) for name in [*named, "AUTOMATION_KAFKA_SECURITY_PROTOCOL is SASL_SSL"])


@pytest.mark.parametrize("content", [None, "a directory", "not a certificate\n"])
def test_a_client_is_refused_a_ca_file_it_cannot_load(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "ca.crt"
    if content == "a directory":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    with pytest.raises(KafkaSecurityError, match=f"AUTOMATION_KAFKA_SSL_CAFILE={path}"):
        kafka_client_options(scram(kafka_ssl_cafile=path))


# ------------------------------------------------------------------------------------ the clients


def assert_connects_as(client: AIOKafkaClient, settings: Settings, cafile: Path) -> None:
    """aiokafka's client (what producer, consumer and admin client connect through) got every option."""
    assert client._bootstrap_servers == settings.kafka_bootstrap_servers
    assert client._security_protocol == "SASL_SSL"
    assert client._sasl_mechanism == "SCRAM-SHA-512"
    assert (client._sasl_plain_username, client._sasl_plain_password) == ("automation-executor", PASSWORD)
    assert loaded_ca(client._ssl_context) == [ssl.PEM_cert_to_DER_cert(cafile.read_text())]


async def test_the_services_producer_connects_securely(cafile: Path) -> None:
    settings = scram(kafka_ssl_cafile=cafile)
    producer = KafkaPublisher(settings)._new_producer()
    try:
        assert_connects_as(producer.client, settings, cafile)
    finally:
        await producer.stop()


async def test_the_services_batch_consumers_connect_securely(cafile: Path) -> None:
    settings = scram(kafka_ssl_cafile=cafile, service_name="executor")

    async def handler(*_: Any) -> None:
        return None

    subscription = Subscription(topics.TRIGGER_DETECTED, "run-starter", envelope_itself, handler)
    batch_consumer = BatchConsumer(subscription, settings=settings, engine=cast(Any, None),
                                   publisher=KafkaPublisher(settings))
    consumer = batch_consumer._new_consumer()
    try:
        assert_connects_as(consumer._client, settings, cafile)
        assert consumer._group_id == "executor.run-starter"
    finally:
        await consumer.stop()


async def test_the_admin_client_of_create_topics_connects_securely(cafile: Path) -> None:
    settings = scram(kafka_ssl_cafile=cafile)
    admin = admin_client(settings)
    try:
        assert_connects_as(admin._client, settings, cafile)
    finally:
        await admin.close()


async def test_the_test_probe_connects_securely(monkeypatch: pytest.MonkeyPatch, cafile: Path) -> None:
    built: list[dict[str, Any]] = []

    class Recorder:
        def __init__(self, **options: Any) -> None:
            built.append(options)

        async def start(self) -> None:
            return None

        async def stop(self) -> None:
            return None

    monkeypatch.setattr(testing, "AIOKafkaProducer", Recorder)
    async with testing.KafkaProbe(scram(kafka_ssl_cafile=cafile)):
        pass
    [options] = built
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_plain_password"] == PASSWORD
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def kafka_client_constructions() -> Iterator[tuple[str, ast.Call]]:
    """Every ``AIOKafkaProducer(...)``, ``AIOKafkaConsumer(...)`` and ``AIOKafkaAdminClient(...)`` in the repository."""
    for path in sorted(ROOT.rglob("*.py")):
        if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in CLIENT_CLASSES:
                    yield f"{path.relative_to(ROOT)}:{node.lineno}", node


def test_every_kafka_client_in_the_repository_is_built_with_the_client_options() -> None:
    """A client built from ``bootstrap_servers`` alone would talk plaintext to a SASL_SSL cluster."""
    sites = list(kafka_client_constructions())
    bare = [site for site, call in sites
            if not any(keyword.arg is None and isinstance(keyword.value, ast.Call)
                       and ast.unparse(keyword.value.func).endswith("kafka_client_options")
                       for keyword in call.keywords)]
    assert len(sites) >= 10 and not bare, bare
