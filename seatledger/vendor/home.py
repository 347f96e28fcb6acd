"""The vendor's home directory: ``vendor.toml``, its keys (0600 in a 0700 directory), its store.

```
seatledger-vendor/                 0700
  vendor.toml                      name, store URL, defaults for the licences it issues
  keys/                            0700
    licence-signing.key            minisign secret key that signs licence files (0600)
    licence-signing.pub            the public key every customer's master pins
    age-identity.txt               age identity the customers' exports are encrypted to (0600)
    age-recipient.txt              its public half (age1...)
    store.key                      the store's at-rest key (0600)
  vendor.db                        the vendor's store (SQLite; PostgreSQL by URL instead)
  inbox/                           where the vendor's SFTP/FTP server writes customers' exports
```
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import attrs

from exporters import SigningKey, generate_signing_key
from exporters import load_signing_key as load_minisign_key
from exporters.envelope import generate_age_identity, write_age_identity
from ledger import create_key_file
from ledger.domain.terms import DEFAULT_TOLERATED_DAYS
from seatledger.config.keys import write_private
from seatledger.config.settings import ConfigError

ENV_VAR = "SEATLEDGER_VENDOR_DIR"
DEFAULT_DIR = "seatledger-vendor"

__all__ = ["DEFAULT_DIR", "ENV_VAR", "VendorConfig", "VendorLayout", "init_vendor_home",
           "load_vendor_config", "vendor_dir_from"]


def vendor_dir_from(arg: str | None) -> Path:
    """``--vendor-dir``, else ``$SEATLEDGER_VENDOR_DIR``, else ``./seatledger-vendor``."""
    return Path(arg or os.environ.get(ENV_VAR) or DEFAULT_DIR).expanduser().absolute()


@attrs.frozen
class VendorLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "vendor.toml"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def licence_key(self) -> Path:
        return self.keys / "licence-signing.key"

    @property
    def licence_pub(self) -> Path:
        return self.keys / "licence-signing.pub"

    @property
    def age_identity(self) -> Path:
        return self.keys / "age-identity.txt"

    @property
    def age_recipient(self) -> Path:
        return self.keys / "age-recipient.txt"

    @property
    def store_key(self) -> Path:
        return self.keys / "store.key"

    @property
    def store_db(self) -> Path:
        return self.root / "vendor.db"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"


@attrs.frozen
class VendorConfig:
    """``vendor.toml``, with its defaults."""

    layout: VendorLayout
    name: str
    store_url: str
    export_destination: str  # where the licences it issues direct customers' exports
    export_host_key: str = ""
    tolerated_days: int = DEFAULT_TOLERATED_DAYS
    inbox: Path | None = None

    @property
    def root(self) -> Path:
        return self.layout.root

    def signing_key(self) -> SigningKey:
        return load_minisign_key(self.layout.licence_key)

    def recipient(self) -> str:
        return self.layout.age_recipient.read_text(encoding="ascii").strip()

    def identity_text(self) -> str:
        return self.layout.age_identity.read_text(encoding="ascii")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_vendor_config(name: str, store_url: str | None, destination: str,
                         host_key: str) -> str:
    store = (f"url = {_quote(store_url)}" if store_url else
             '# url = "postgresql://vendor@db.example/seatledger_vendor"  (default: vendor.db)')
    return "\n".join([
        "# The vendor's workstation (seatledger vendor ...). Keys live in keys/, never here.",
        "[vendor]",
        f"name = {_quote(name)}",
        "",
        "[store]",
        store,
        "",
        "# Defaults for the licences this vendor issues: where customers' masters must deliver",
        "# their daily export (sftp://host:port/dir with the server's host-key fingerprint,",
        "# ftps://, ftp://, or file:///path for a folder on this machine), and how many days",
        "# without a delivery are tolerated before over-use grace is withdrawn.",
        "[licence]",
        f"export_destination = {_quote(destination)}",
        f"export_host_key = {_quote(host_key)}",
        f"tolerated_days = {DEFAULT_TOLERATED_DAYS}",
        "",
        "[import]",
        'inbox = "inbox"',
        "",
    ])


def init_vendor_home(root: Path, *, name: str, store_url: str | None = None,
                     destination: str | None = None, host_key: str = "") -> VendorConfig:
    """Create the vendor's home ``root``: config, keys (0600), inbox and store.

    Raises:
        ConfigError: ``root`` exists already (nothing in it is touched).
    """
    layout = VendorLayout(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ConfigError(f"{root} already exists; the vendor's home is created in a new "
                          "directory (not overwriting anything)")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    layout.keys.mkdir(mode=0o700)
    layout.inbox.mkdir(mode=0o700)
    destination = destination or layout.inbox.as_uri()
    write_private(layout.config,
                  render_vendor_config(name, store_url, destination, host_key).encode())
    generate_signing_key(layout.licence_key, layout.licence_pub)
    identity = generate_age_identity()
    write_age_identity(layout.age_identity, identity)
    write_private(layout.age_recipient, (identity.recipient + "\n").encode("ascii"))
    create_key_file(layout.store_key)
    config = load_vendor_config(root)
    from seatledger.vendor.registry import VendorStore  # the store needs the config first
    VendorStore.open(config, create=True).close()
    return config


def load_vendor_config(root: Path) -> VendorConfig:
    """Read ``vendor.toml``. Raises ConfigError with a one-line reason."""
    layout = VendorLayout(root)
    if not layout.config.exists():
        raise ConfigError(f"no vendor home at {root} (run 'seatledger vendor init "
                          f"--vendor-dir {root}')")
    try:
        raw: dict[str, Any] = tomllib.loads(layout.config.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{layout.config}: not valid TOML ({e})") from None
    vendor, store = raw.get("vendor", {}), raw.get("store", {})
    licence, inbox = raw.get("licence", {}), raw.get("import", {})
    if not all(isinstance(t, dict) for t in (vendor, store, licence, inbox)):
        raise ConfigError(f"{layout.config}: [vendor], [store], [licence] and [import] "
                          "must be tables")
    name = vendor.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{layout.config}: [vendor] name is missing")
    url = store.get("url") or f"sqlite:///{layout.store_db}"
    destination = licence.get("export_destination") or layout.inbox.as_uri()
    tolerated = licence.get("tolerated_days", DEFAULT_TOLERATED_DAYS)
    if not isinstance(url, str) or not isinstance(destination, str):
        raise ConfigError(f"{layout.config}: [store] url and [licence] export_destination "
                          "must be strings")
    if not isinstance(tolerated, int) or isinstance(tolerated, bool) or tolerated < 1:
        raise ConfigError(f"{layout.config}: [licence] tolerated_days must be a whole number "
                          "of at least 1")
    inbox_dir = inbox.get("inbox", "inbox")
    if not isinstance(inbox_dir, str):
        raise ConfigError(f"{layout.config}: [import] inbox must be a path")
    return VendorConfig(layout, name.strip(), url, destination,
                        str(licence.get("export_host_key", "")), tolerated,
                        root / Path(inbox_dir).expanduser())
