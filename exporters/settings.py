"""The ``[export]`` settings of ``seatledger.toml`` and the sink they describe.

```toml
[export]
recipients = ["age1..."]          # the vendor's age public key(s)
time = "01:30"                    # UTC time of the daily run (the master daemon's)

[export.sink]
kind = "sftp"                     # folder | sftp | ftp | ftps
host = "sftp.vendor.example"
port = 22
username = "acme"
key_file = "keys/vendor-sftp.key" # sftp: key_file or password_file
known_hosts = "keys/vendor.known_hosts"  # or: host_key = "SHA256:..." (pinned; a licence
                                         # that directs exports pins it)
remote_dir = "incoming"
# password_file = "keys/vendor-ftp.password"   (ftp, ftps, or sftp instead of key_file)
# ca_file = "keys/vendor-ca.pem"               (ftps; default: the system's trust store)
# path = "/srv/outbox"                         (folder)
timeout = 30                      # seconds per network operation
attempts = 5                      # tries per run, with exponential backoff between them
first_delay = 2                   # seconds before the first retry
max_delay = 60
```

Secrets are never inline: the sink reads them from the files named. Relative paths are
relative to the data directory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, time
from pathlib import Path
from typing import Any

import attrs

from . import sinks  # (each adapter, and its client library, loaded when it is made)
from .envelope import check_recipients
from .errors import ExportConfigError, KeyMaterialError
from .sinks.base import RetryPolicy, Sink

__all__ = ["ExportSettings", "SinkSettings", "make_sink", "parse_export_settings"]

_KINDS = ("folder", "sftp", "ftp", "ftps")
_EXPORT_KEYS = {"recipients", "time", "sink"}
_SINK_KEYS = {
    "kind", "host", "port", "username", "key_file", "password_file", "known_hosts", "host_key",
    "ca_file",
    "remote_dir", "path", "timeout", "attempts", "first_delay", "max_delay",
}
_DEFAULT_PORTS = {"sftp": 22, "ftp": 21, "ftps": 21}


@attrs.frozen
class SinkSettings:
    """Where exports go. Paths are absolute."""

    kind: str
    host: str = ""
    port: int = 0
    username: str = ""
    key_file: Path | None = None
    password_file: Path | None = None
    known_hosts: Path | None = None
    host_key: str = ""  # sftp: the server's pinned SHA256 fingerprint, instead of known_hosts
    ca_file: Path | None = None
    remote_dir: str = "."
    path: Path | None = None
    timeout: float = 30.0
    attempts: int = 5
    first_delay: float = 2.0
    max_delay: float = 60.0


@attrs.frozen
class ExportSettings:
    """The whole ``[export]`` table."""

    recipients: tuple[str, ...]
    time: time
    sink: SinkSettings


def parse_export_settings(table: Mapping[str, Any], base: Path,
                          where: str = "seatledger.toml") -> ExportSettings:
    """Validate an ``[export]`` table; relative paths are taken from ``base``.

    Raises:
        ExportConfigError: one line naming the key and what is wrong.
    """
    def fail(message: str) -> ExportConfigError:
        return ExportConfigError(f"{where}: {message}")

    if not isinstance(table, Mapping):
        raise fail("[export] must be a table")
    _no_unknown(table, _EXPORT_KEYS, "[export]", fail)
    recipients = table.get("recipients")
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise fail('[export] recipients must be a list of age public keys ("age1...")')
    try:
        check_recipients(recipients)
    except KeyMaterialError as err:
        raise fail(f"[export] recipients: {err}") from None
    run_at = _time(table.get("time", "01:30"), fail)
    sink = table.get("sink")
    if not isinstance(sink, Mapping):
        raise fail("[export.sink] is missing: say where exports go (kind = folder|sftp|ftp|ftps)")
    return ExportSettings(tuple(r.strip() for r in recipients), run_at,
                          _sink(sink, base, fail))


def _no_unknown(table: Mapping[str, Any], known: set[str], section: str,
                fail: Callable[[str], ExportConfigError]) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise fail(f"{section} has unknown key(s): {', '.join(unknown)}")


def _time(value: object, fail: Callable[[str], ExportConfigError]) -> time:
    try:
        if not isinstance(value, str):
            raise ValueError
        hours, minutes = value.split(":")
        return time(int(hours), int(minutes), tzinfo=UTC)
    except ValueError:
        raise fail(f'[export] time must be "HH:MM" (UTC), not {value!r}') from None


def _sink(table: Mapping[str, Any], base: Path,
          fail: Callable[[str], ExportConfigError]) -> SinkSettings:
    _no_unknown(table, _SINK_KEYS, "[export.sink]", fail)
    kind = table.get("kind")
    if kind not in _KINDS:
        raise fail(f"[export.sink] kind must be one of {', '.join(_KINDS)}, not {kind!r}")

    def get(key: str, kinds: type | tuple[type, ...], default: Any = None) -> Any:
        value = table.get(key, default)
        if value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise fail(f"[export.sink] {key} has the wrong type ({value!r})")
        return value

    def path(key: str) -> Path | None:
        value = get(key, str)
        return None if value is None else (base / Path(value).expanduser())

    def require(key: str) -> None:
        if table.get(key) in (None, ""):
            raise fail(f"[export.sink] {key} is required for kind {kind!r}")

    settings = SinkSettings(
        kind=kind,
        host=get("host", str, ""),
        port=get("port", int, _DEFAULT_PORTS.get(kind, 0)),
        username=get("username", str, ""),
        key_file=path("key_file"),
        password_file=path("password_file"),
        known_hosts=path("known_hosts"),
        host_key=get("host_key", str, ""),
        ca_file=path("ca_file"),
        remote_dir=get("remote_dir", str, "."),
        path=path("path"),
        timeout=float(get("timeout", (int, float), 30.0)),
        attempts=get("attempts", int, 5),
        first_delay=float(get("first_delay", (int, float), 2.0)),
        max_delay=float(get("max_delay", (int, float), 60.0)),
    )
    if kind == "folder":
        require("path")
    else:
        for key in ("host", "username"):
            require(key)
        if not 0 < settings.port < 65536:
            raise fail(f"[export.sink] port {settings.port} is out of range")
    if kind == "sftp":
        if not settings.host_key:
            require("known_hosts")
        if (settings.key_file is None) == (settings.password_file is None):
            raise fail("[export.sink] give exactly one of key_file and password_file for sftp")
    if kind in ("ftp", "ftps"):
        require("password_file")
    if settings.attempts < 1 or settings.first_delay < 0 or settings.max_delay < 0:
        raise fail("[export.sink] attempts must be at least 1 and delays not negative")
    return settings


def make_sink(settings: SinkSettings, *, sleep: Callable[[float], None] | None = None) -> Sink:
    """The sink ``settings`` describe. ``sleep`` replaces ``time.sleep`` between retries.

    Raises:
        SinkConfigError: a secret, key or known_hosts file is unreadable.
    """
    retry = RetryPolicy(attempts=settings.attempts, first_delay=settings.first_delay,
                        max_delay=settings.max_delay)
    if sleep is not None:
        retry = attrs.evolve(retry, sleep=sleep)
    if settings.kind == "folder":
        assert settings.path is not None
        return sinks.LocalSink(settings.path, retry=retry)
    if settings.kind == "sftp":
        return sinks.SftpSink(
            settings.host, settings.port, username=settings.username,
            known_hosts=None if settings.host_key else settings.known_hosts,
            host_key=settings.host_key or None, key_file=settings.key_file,
            password_file=settings.password_file, remote_dir=settings.remote_dir,
            timeout=settings.timeout, retry=retry)
    assert settings.password_file is not None
    if settings.kind == "ftps":
        return sinks.FtpsSink(
            settings.host, settings.port, username=settings.username,
            password_file=settings.password_file, ca_file=settings.ca_file,
            remote_dir=settings.remote_dir, timeout=settings.timeout, retry=retry)
    return sinks.FtpSink(
        settings.host, settings.port, username=settings.username,
        password_file=settings.password_file, remote_dir=settings.remote_dir,
        timeout=settings.timeout, retry=retry)
