"""The alert channels: a webhook (JSON POST, HMAC-SHA256 signed) and e-mail (SMTP with
STARTTLS). Each ``send`` blocks (the dispatcher runs it in a worker thread) and is bounded
by its timeout; any failure is a :class:`DeliveryError`.

The webhook's signature: ``X-Seatledger-Timestamp`` is the send time in Unix seconds;
``X-Seatledger-Signature`` is ``sha256=`` and the hex HMAC-SHA256, keyed with the shared
secret, of the timestamp, a full stop and the body (``f"{timestamp}.{body}"``). A receiver
recomputes it, compares in constant time, and refuses old timestamps (replays).
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage

from seatledger.alerts._alert import Alert

TIMESTAMP_HEADER = "X-Seatledger-Timestamp"
SIGNATURE_HEADER = "X-Seatledger-Signature"


class AlertError(Exception):
    """The root of the alert errors."""


class DeliveryError(AlertError):
    """An alert could not be delivered on one attempt (it may be retried)."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Seatledger-Signature`` value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class Channel(abc.ABC):
    """Where alerts go. ``send`` blocks until delivered; raises DeliveryError."""

    name: str

    @abc.abstractmethod
    def send(self, alert: Alert) -> None: ...


class WebhookChannel(Channel):
    """POST each alert as JSON to ``url``; any 2xx status is delivered."""

    name = "webhook"

    def __init__(self, url: str, secret: bytes, *, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.clock = clock

    def send(self, alert: Alert) -> None:
        body = alert.to_json()
        timestamp = str(int(self.clock()))
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "seatledger-alerts",
            TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(self.secret, timestamp, body)})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as e:
            raise DeliveryError(f"webhook {self.url}: HTTP {e.code} {e.reason}") from e
        except (OSError, ValueError) as e:  # URLError, timeouts, refused connections
            raise DeliveryError(f"webhook {self.url}: {getattr(e, 'reason', e)}") from e


class EmailChannel(Channel):
    """Send each alert as a plain-text e-mail through an SMTP server, over STARTTLS unless
    ``starttls`` is off, logging in when ``username`` is set."""

    name = "email"

    def __init__(self, host: str, port: int, sender: str, recipients: list[str], *,
                 starttls: bool = True, username: str = "", password: str = "",
                 context: ssl.SSLContext | None = None, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.recipients = recipients
        self.starttls = starttls
        self.username = username
        self.password = password
        self.context = context or ssl.create_default_context()
        self.timeout = timeout

    def message(self, alert: Alert) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["Subject"] = alert.subject
        lines = [alert.text, "", f"kind: {alert.kind}", f"severity: {alert.severity}",
                 f"at: {alert.at.isoformat()}"]
        if alert.site:
            lines.append(f"site: {alert.site}")
        if alert.master:
            lines.append(f"master: {alert.master}")
        message.set_content("\n".join(lines) + "\n")
        return message

    def send(self, alert: Alert) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=self.context)
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(self.message(alert), self.sender, self.recipients)
        except smtplib.SMTPException as e:
            raise DeliveryError(f"e-mail via {self.host}:{self.port}: {e}") from e
        except OSError as e:  # refused, timed out, TLS failed (ssl.SSLError is an OSError)
            raise DeliveryError(f"e-mail via {self.host}:{self.port}: {e}") from e


__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "AlertError", "Channel", "DeliveryError",
           "EmailChannel", "WebhookChannel", "sign"]
