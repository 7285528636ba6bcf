"""How every Kafka client of the platform reaches the brokers: bootstrap servers, TLS and SASL.

:func:`kafka_client_options` is the one place the aiokafka connection arguments are made from
:class:`Settings`; the producer and batch consumers (``messaging.py``), the admin client
(``cli.py``), the test probes (``testing.py``) and the benchmark all unpack it, so no client can
talk plaintext while the others authenticate.

The settings already refused combinations the protocol would ignore (see
``Settings._kafka_security_consistent``). What only a process that connects needs — the SASL
credentials, a loadable CA file — is checked here, when a client is built: the ``migrate``
containers read the same settings without the Kafka password or the CA mounted.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

from automation_shared.settings import SASL_PROTOCOLS, TLS_PROTOCOLS, Settings, env_name


class KafkaSecurityError(RuntimeError):
    """The settings cannot make a Kafka client: SASL credentials are missing or the CA file cannot be loaded."""


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments that connect an ``AIOKafkaProducer``, ``AIOKafkaConsumer`` or ``AIOKafkaAdminClient``.

    ``bootstrap_servers`` and ``security_protocol`` always; ``sasl_mechanism``,
    ``sasl_plain_username`` and ``sasl_plain_password`` with a ``SASL_*`` protocol; an
    ``ssl_context`` (built afresh, so a rotated CA file is read by the next client) with ``SSL``
    and ``SASL_SSL``. The result holds the SASL password in clear: never log it.

    Raises:
        KafkaSecurityError: a ``SASL_*`` protocol without username or password, or a CA file
            that is missing, unreadable or holds no certificate.
    """
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        **_sasl_options(settings),
        **_tls_options(settings),
    }


def _sasl_options(settings: Settings) -> dict[str, Any]:
    protocol = settings.kafka_security_protocol
    if protocol not in SASL_PROTOCOLS:
        return {}
    username, password = settings.kafka_sasl_username, settings.kafka_sasl_password
    if username is None or password is None:
        missing = [env_name(name) for name, value in (("kafka_sasl_username", username),
                                                      ("kafka_sasl_password", password)) if value is None]
        raise KafkaSecurityError(f"{' and '.join(missing)} must be set to connect to Kafka: "
                                 f"{env_name('kafka_security_protocol')} is {protocol}, which authenticates with SASL")
    return {
        "sasl_mechanism": settings.kafka_sasl_mechanism,
        "sasl_plain_username": username,
        "sasl_plain_password": password.get_secret_value(),
    }


def _tls_options(settings: Settings) -> dict[str, Any]:
    if settings.kafka_security_protocol not in TLS_PROTOCOLS:
        return {}
    return {"ssl_context": _ssl_context(settings.kafka_ssl_cafile)}


def _ssl_context(cafile: Path | None) -> ssl.SSLContext:
    """A client context that verifies the brokers' certificates and host names against ``cafile``
    (the system's CAs without one), as aiokafka's helper makes it."""
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=cafile)
    except OSError as exc:  # missing, unreadable, a directory, or no PEM certificate (ssl.SSLError)
        source = f"{env_name('kafka_ssl_cafile')}={cafile}" if cafile is not None else "the system's CA store"
        raise KafkaSecurityError(f"cannot load the CAs of the Kafka brokers from {source}: {exc}") from exc
    return context
