"""The data directory and its ``seatledger.toml``."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import attrs

CONFIG_NAME = "seatledger.toml"
ENV_DATA_DIR = "SEATLEDGER_DATA_DIR"
DEFAULT_DATA_DIR = "seatledger-data"


class ConfigError(Exception):
    """The data directory or its configuration is missing or wrong."""


def data_dir_from(arg: str | None) -> Path:
    """--data-dir, else $SEATLEDGER_DATA_DIR, else ./seatledger-data."""
    return Path(arg or os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR).absolute()


@attrs.frozen
class Layout:
    """Where things live inside a data directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def at_rest_key(self) -> Path:
        return self.keys / "at-rest.key"

    @property
    def signing_key(self) -> Path:
        return self.keys / "signing.key"

    @property
    def signing_pub(self) -> Path:
        return self.keys / "signing.pub"

    @property
    def vendor_key(self) -> Path:
        """The vendor's licence-signing public key, pinned at ``init --vendor-key``."""
        return self.keys / "vendor.pub"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def ledger_db(self) -> Path:
        return self.root / "ledger.db"

    @property
    def checkpoint(self) -> Path:
        return self.root / "seal" / "latest.checkpoint"

    @property
    def bundles(self) -> Path:
        return self.root / "bundles"

    @property
    def run(self) -> Path:
        """Files of the running master: its lock and its admin socket."""
        return self.root / "run"

    @property
    def lock(self) -> Path:
        return self.run / "master.lock"

    @property
    def admin_socket(self) -> Path:
        return self.run / "admin.sock"


@attrs.frozen
class Config:
    """Settings read from seatledger.toml, with their defaults."""

    layout: Layout
    store_url: str
    origin: str
    checkpoint_every: int = 10_000
    snapshot_every: int = 20_000
    sign_every_records: int = 1000
    sign_every_seconds: float = 1.0
    snapshot_when_idle: bool = True
    listen: str = "127.0.0.1:7600"
    heartbeat_seconds: float = 10.0
    missed_heartbeats: int = 3
    events_per_agent_per_day: int = 10
    upstream_bundle: Path | None = None
    """A chained master's bundle from its upstream master ([upstream] bundle)."""
    upstream_answer_timeout: float = 2.0
    writer: str = "thread"
    """Where a master commits: "thread" (a worker thread) or "process" (a writer process of
    its own; measured no faster on two cores yet, and it costs start-up time and memory)."""
    raw: dict[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def root(self) -> Path:
        return self.layout.root


def load_config(root: Path) -> Config:
    """Read the data directory's configuration. Raises ConfigError with a one-line reason."""
    layout = Layout(root)
    if not layout.config.exists():
        raise ConfigError(
            f"no seatledger data directory at {root} (run 'seatledger init --data-dir {root}')"
        )
    try:
        raw = tomllib.loads(layout.config.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{layout.config}: not UTF-8 text (byte {e.start}): "
                          "restore the file written by 'seatledger init'") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{layout.config}: {e}") from None
    except OSError as e:
        raise ConfigError(f"{layout.config}: {e.strerror}") from None
    store = _table(raw, "store")
    seal = _table(raw, "seal")
    master = _table(raw, "master")
    storage = _table(raw, "storage")
    upstream = _table(raw, "upstream")
    bundle = _get(upstream, "bundle", str, "", "upstream")
    answer_timeout = float(_get(upstream, "answer_timeout", (int, float), 2.0, "upstream"))
    writer = _get(master, "writer", str, "thread", "master")
    if writer not in ("process", "thread"):
        raise ConfigError(f"{layout.config}: [master] writer must be \"process\" or "
                          f"\"thread\", not {writer!r}")
    if not 0 < answer_timeout < 3:
        raise ConfigError(f"{layout.config}: [upstream] answer_timeout must be above 0 and "
                          "below 3 seconds (a slave waits 3 s for its master's answer)")
    if "origin" not in seal:
        # The origin names every signed checkpoint: a default would sign under the wrong
        # name and make the seal fail to verify for good once the real file is back.
        raise ConfigError(f"{layout.config}: [seal] origin is missing (every data directory "
                          "has one: restore the file written by 'seatledger init')")
    sign_every_records = _get(seal, "sign_every_records", int, 1000, "seal")
    sign_every_seconds = float(_get(seal, "sign_every_seconds", (int, float), 1.0, "seal"))
    if sign_every_records < 1 or sign_every_seconds < 0:
        raise ConfigError(f"{layout.config}: [seal] sign_every_records must be at least 1 and "
                          "sign_every_seconds not negative")
    url = _get(store, "url", str, "", "store")
    if not url:
        url = f"sqlite:///{layout.ledger_db}"
    return Config(
        layout=layout,
        store_url=url,
        origin=_get(seal, "origin", str, "seatledger", "seal"),
        checkpoint_every=_get(seal, "checkpoint_every", int, 10_000, "seal"),
        snapshot_every=_get(seal, "snapshot_every", int, 20_000, "seal"),
        sign_every_records=sign_every_records,
        sign_every_seconds=sign_every_seconds,
        snapshot_when_idle=_get(seal, "snapshot_when_idle", bool, True, "seal"),
        listen=_get(master, "listen", str, "127.0.0.1:7600", "master"),
        heartbeat_seconds=float(_get(master, "heartbeat_seconds", (int, float), 10.0, "master")),
        missed_heartbeats=_get(master, "missed_heartbeats", int, 3, "master"),
        events_per_agent_per_day=_get(storage, "events_per_agent_per_day", int, 10, "storage"),
        upstream_bundle=(root / bundle) if bundle else None,
        upstream_answer_timeout=answer_timeout,
        writer=writer,
        raw=raw,
    )


def _table(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{CONFIG_NAME}: [{name}] must be a table")
    return value


def _get(table: dict[str, Any], key: str, kind: Any, default: Any, section: str) -> Any:
    value = table.get(key, default)
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ConfigError(f"{CONFIG_NAME}: [{section}] {key} has the wrong type ({value!r})")
    return value


# Addresses an HTTP listener (``[web]``, ``[metrics]``) may serve on in plain HTTP without a
# login; anywhere else (127.0.0.2 included) it needs HTTPS and a token.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@attrs.frozen
class HttpListener:
    """An HTTP listener of ``[web]`` (the dashboard) or ``[metrics]`` (Prometheus)."""

    section: str
    host: str
    port: int
    tls: bool = False
    cert_file: Path | None = None  # None with tls: issued from the data directory's CA
    key_file: Path | None = None
    token_file: Path | None = None  # a bearer token (0600); required off 127.0.0.1

    @property
    def local(self) -> bool:
        return self.host in LOCAL_HOSTS


def http_listener(raw: dict[str, Any], section: str, default_listen: str,
                  root: Path) -> HttpListener | None:
    """The ``[section]`` listener, or None when the table is absent (not served). Relative
    paths are under ``root``.

    Raises:
        ConfigError: a wrong value, or an address other than 127.0.0.1 without ``tls = true``
            and a ``token_file``.
    """
    if section not in raw:
        return None
    table = _table(raw, section)
    listen = _get(table, "listen", str, default_listen, section)
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{CONFIG_NAME}: [{section}] listen {listen!r}: use HOST:PORT")

    def path(key: str) -> Path | None:
        value = _get(table, key, str, "", section)
        return (root / value) if value else None

    listener = HttpListener(section, host.strip("[]"), int(port),
                            tls=_get(table, "tls", bool, False, section),
                            cert_file=path("cert_file"), key_file=path("key_file"),
                            token_file=path("token_file"))
    if (listener.cert_file is None) != (listener.key_file is None):
        raise ConfigError(f"{CONFIG_NAME}: [{section}] cert_file and key_file go together")
    if not listener.local and not (listener.tls and listener.token_file is not None):
        raise ConfigError(f"{CONFIG_NAME}: [{section}] listens on {listen}, beyond this host: "
                          "it needs tls = true and a token_file")
    return listener


def render_config(origin: str, store_url: str | None) -> str:
    """The initial seatledger.toml written by ``seatledger init``."""
    store_line = (
        f'url = "{store_url}"' if store_url
        else '# url = "postgresql://user@host:5432/seatledger"   # default: ledger.db in this directory'
    )
    return f"""# seatledger configuration. Secrets never go here: keys live in keys/ (mode 0600).

[store]
{store_line}

[seal]
# Name under which checkpoints are signed (C2SP signed-note origin and key name).
origin = "{origin}"
# Record a signed checkpoint in the log every this many records (and at shutdown).
checkpoint_every = 10000
snapshot_every = 20000
# Sign the store's checkpoint every this many records, and the checkpoint file outside the
# store at most this many seconds after a commit: records after the last signature can be
# removed unnoticed by someone who can write the store (docs/threat-model.md).
sign_every_records = 1000
sign_every_seconds = 1
# Take a due snapshot when the master is next idle, not while a command waits for it.
snapshot_when_idle = true

[master]
listen = "127.0.0.1:7600"
heartbeat_seconds = 10
missed_heartbeats = 3

[storage]
# Workload used to project storage per agent over six months.
events_per_agent_per_day = 10
"""
