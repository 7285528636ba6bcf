"""Email over SMTP (aiosmtplib): one connection per message, every failure classified.

Reply codes decide retries (``domain.actions.notification.smtp_retryable``): 4xx is the
server saying "not now" (greylisting, a full mailbox, a busy server), 5xx "never". No answer at
all — a refused or dropped connection, a timeout — is worth retrying too. Recipients refused
while others were accepted do not fail the message (it was delivered once; sending it again to
everyone would duplicate it); they are reported with their codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Literal, cast

import aiosmtplib
from automation_shared.settings import Settings

from executor.domain.actions.notification import smtp_retryable

Security = Literal["none", "starttls", "tls"]


@dataclass(frozen=True)
class SmtpServer:
    """Where email goes and how to log in (operator settings)."""

    host: str
    port: int
    security: Security = "starttls"
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = 15.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpServer | None:
        """The server of ``AUTOMATION_SMTP_*``, or ``None`` when no ``smtp_host`` is set (email is not offered).

        Raises:
            ValueError: ``smtp_security`` is not one of none, starttls, tls.
        """
        host = getattr(settings, "smtp_host", None)
        if not host:
            return None
        security = str(getattr(settings, "smtp_security", "starttls"))
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"AUTOMATION_SMTP_SECURITY must be none, starttls or tls, not {security!r}")
        password = getattr(settings, "smtp_password", None)
        if password is not None and hasattr(password, "get_secret_value"):
            password = password.get_secret_value()
        port = getattr(settings, "smtp_port", None) or {"none": 25, "starttls": 587, "tls": 465}[security]
        return cls(host=str(host), port=int(port), security=cast(Security, security),
                   username=getattr(settings, "smtp_username", None) or None, password=password or None,
                   timeout_seconds=float(getattr(settings, "smtp_timeout_seconds", 15.0)))


class SmtpFailure(Exception):
    """The message was not accepted; ``retryable`` says whether a later attempt may be."""

    def __init__(self, message: str, *, retryable: bool, code: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


async def send_email(server: SmtpServer, message: EmailMessage, *, sender: str,
                     recipients: Sequence[str]) -> dict[str, str]:
    """Send ``message`` to ``recipients`` (the envelope) and return the recipients refused, with why.

    Raises:
        SmtpFailure: the message was accepted for no one.
    """
    try:
        refused, _reply = await aiosmtplib.send(
            message, sender=sender, recipients=list(recipients), hostname=server.host, port=server.port,
            username=server.username, password=server.password, timeout=server.timeout_seconds,
            use_tls=server.security == "tls", start_tls=server.security == "starttls")
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [refusal.code for refusal in exc.recipients]
        detail = "; ".join(f"{refusal.recipient}: {refusal.code} {refusal.message}" for refusal in exc.recipients)
        raise SmtpFailure(f"SMTP server refused every recipient ({detail})",
                          retryable=any(smtp_retryable(code) for code in codes),
                          code=codes[0] if codes else None) from None
    except aiosmtplib.SMTPResponseException as exc:
        raise SmtpFailure(f"SMTP {exc.code} {exc.message} ({type(exc).__name__})",
                          retryable=smtp_retryable(exc.code), code=exc.code) from None
    except (aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPConnectError,
            OSError) as exc:
        raise SmtpFailure(f"SMTP server {server.host}:{server.port} unreachable: {type(exc).__name__}: {exc}",
                          retryable=True) from None
    except aiosmtplib.SMTPException as exc:  # e.g. STARTTLS required but not offered: a configuration error
        raise SmtpFailure(f"SMTP {type(exc).__name__}: {exc}", retryable=False) from None
    return {recipient: f"{reply.code} {reply.message}" for recipient, reply in refused.items()}
