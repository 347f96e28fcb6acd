"""``[alerts]`` in ``seatledger.toml``: which channels, and how hard to try.

```toml
[alerts]
queue_size = 100            # alerts waiting per channel; beyond it they are dropped
retries = 5                 # attempts after the first, then the alert is dropped
backoff_seconds = 1         # first retry delay, doubling up to max_backoff_seconds
max_backoff_seconds = 60
timeout_seconds = 10        # one attempt (connect, send, answer)

[alerts.webhook]
url = "https://hooks.example.com/seatledger"
secret_file = "keys/webhook.secret"    # 0600; the HMAC-SHA256 key

[alerts.email]
host = "smtp.example.com"
port = 587
from = "seatledger@example.com"
to = ["noc@example.com"]
starttls = true
username = "seatledger"
password_file = "keys/smtp.password"   # 0600
ca_file = ""                           # a private CA for the SMTP server (default: system)
```

Relative paths are in the data directory. Secrets are read once, at start, from files that
only their owner may read.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import attrs

from seatledger.alerts.channels import Channel, EmailChannel, WebhookChannel
from seatledger.alerts.dispatcher import Dispatcher
from seatledger.config.keys import read_private
from seatledger.config.settings import CONFIG_NAME, Config, ConfigError


@attrs.frozen
class AlertSettings:
    channels: tuple[Channel, ...] = ()
    queue_size: int = 100
    retries: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0

    def dispatcher(self, master: str = "") -> Dispatcher:
        return Dispatcher(self.channels, queue_size=self.queue_size, retries=self.retries,
                          first_backoff=self.backoff_seconds,
                          max_backoff=self.max_backoff_seconds, master=master)


def load_alert_settings(config: Config) -> AlertSettings:
    """The ``[alerts]`` settings, with their secrets read.

    Raises:
        ConfigError: a setting is missing or wrong, or a secret file is unreadable or
            readable by others than its owner.
    """
    raw = config.raw.get("alerts", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{CONFIG_NAME}: [alerts] must be a table")
    queue_size = _get(raw, "alerts", "queue_size", int, 100)
    retries = _get(raw, "alerts", "retries", int, 5)
    backoff = float(_get(raw, "alerts", "backoff_seconds", (int, float), 1.0))
    max_backoff = float(_get(raw, "alerts", "max_backoff_seconds", (int, float), 60.0))
    timeout = float(_get(raw, "alerts", "timeout_seconds", (int, float), 10.0))
    if queue_size < 1 or retries < 0 or backoff < 0 or max_backoff < 0 or timeout <= 0:
        raise ConfigError(f"{CONFIG_NAME}: [alerts] queue_size must be at least 1, timeout "
                          "positive, retries and backoffs not negative")
    channels: list[Channel] = []
    webhook = _subtable(raw, "webhook")
    if webhook is not None:
        url = _get(webhook, "alerts.webhook", "url", str, "")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{CONFIG_NAME}: [alerts.webhook] url must be http:// or "
                              f"https:// ({url!r})")
        secret = _secret(config, webhook, "alerts.webhook", "secret_file")
        channels.append(WebhookChannel(url, secret, timeout=timeout))
    email = _subtable(raw, "email")
    if email is not None:
        host = _get(email, "alerts.email", "host", str, "")
        sender = _get(email, "alerts.email", "from", str, "")
        to = _get(email, "alerts.email", "to", list, [])
        if not host or not sender or not to or not all(isinstance(t, str) and t for t in to):
            raise ConfigError(f"{CONFIG_NAME}: [alerts.email] needs host, from and to "
                              "(a list of addresses)")
        username = _get(email, "alerts.email", "username", str, "")
        password = ""
        if username:
            password = _secret(config, email, "alerts.email", "password_file").decode().strip()
        ca_file = _get(email, "alerts.email", "ca_file", str, "")
        try:
            context = ssl.create_default_context(
                cafile=str(_path(config, ca_file)) if ca_file else None)
        except OSError as e:
            raise ConfigError(f"{CONFIG_NAME}: [alerts.email] ca_file {ca_file}: "
                              f"{e.strerror or e}") from None
        channels.append(EmailChannel(
            host, _get(email, "alerts.email", "port", int, 587), sender, list(to),
            starttls=_get(email, "alerts.email", "starttls", bool, True), username=username,
            password=password, context=context, timeout=timeout))
    return AlertSettings(tuple(channels), queue_size, retries, backoff, max_backoff)


def _subtable(raw: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"{CONFIG_NAME}: [alerts.{name}] must be a table")
    return value


def _get(table: dict[str, Any], section: str, key: str, kind: Any, default: Any) -> Any:
    value = table.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{CONFIG_NAME}: [{section}] {key} has the wrong type ({value!r})")
    return value


def _path(config: Config, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else config.root / path


def _secret(config: Config, table: dict[str, Any], section: str, key: str) -> bytes:
    name = _get(table, section, key, str, "")
    if not name:
        raise ConfigError(f"{CONFIG_NAME}: [{section}] {key} is missing")
    return read_private(_path(config, name), f"[{section}] {key}")


__all__ = ["AlertSettings", "load_alert_settings"]
