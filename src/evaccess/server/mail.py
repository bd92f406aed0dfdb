"""The notifications delivery port and its two adapters.

``DeliveryPort`` knows nothing of chargers or PINs: it sends one message to one address.
``LogDelivery`` (the default) logs the recipient and the kind, never subject or body;
``SmtpDelivery`` sends through ``EVACCESS_SMTP_URL``
(``smtp://[user[:password]@]host[:port][?starttls=true]``) with the standard library's
``smtplib`` in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from evaccess.domain.errors import ConfigurationError

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    to: str
    kind: str
    subject: str
    body: str


class DeliveryFailed(Exception):
    """The message was not delivered; the outbox retries it later."""


class DeliveryPort(Protocol):
    async def send(self, message: Message) -> None:
        """Deliver ``message`` or raise ``DeliveryFailed``."""


class LogDelivery:
    """Delivery into the server's log: who is told what kind of thing (content is not logged:
    it may name chargers and people)."""

    async def send(self, message: Message) -> None:
        log.info("notification %s to %s", message.kind, message.to)


@dataclass(frozen=True, kw_only=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    user: str | None
    password: str | None
    starttls: bool

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url)
        if parts.scheme != "smtp" or not parts.hostname:
            raise ConfigurationError(
                "EVACCESS_SMTP_URL: write smtp://[user[:password]@]host[:port][?starttls=true]"
            )
        try:
            port = parts.port or 25
        except ValueError:
            raise ConfigurationError("EVACCESS_SMTP_URL: the port is not a number") from None
        flags = parse_qs(parts.query)
        starttls = flags.get("starttls", ["false"])[-1].lower() in ("1", "true", "yes")
        return cls(
            host=parts.hostname,
            port=port,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            starttls=starttls,
        )


class SmtpDelivery:
    def __init__(self, target: SmtpTarget, sender: str, *, timeout_s: float = 10.0) -> None:
        self.target = target
        self.sender = sender
        self.timeout_s = timeout_s

    async def send(self, message: Message) -> None:
        await asyncio.to_thread(self._send, message)

    def _send(self, message: Message) -> None:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["X-Evaccess-Kind"] = message.kind
        email.set_content(message.body)
        target = self.target
        try:
            with smtplib.SMTP(target.host, target.port, timeout=self.timeout_s) as smtp:
                if target.starttls:
                    smtp.starttls()
                if target.user is not None:
                    smtp.login(target.user, target.password or "")
                smtp.send_message(email)
        except (OSError, smtplib.SMTPException) as exc:
            # The class only: an SMTP reply may echo the recipient or the credentials.
            raise DeliveryFailed(type(exc).__name__) from None
        log.info("notification %s sent to %s by SMTP", message.kind, message.to)


def delivery_from_url(url: str | None, sender: str) -> DeliveryPort:
    """SMTP when a URL is configured, the log otherwise."""
    if not url:
        return LogDelivery()
    return SmtpDelivery(SmtpTarget.parse(url), sender)
