"""Creating a data directory: configuration, keys (0600), the wire's CA, the empty store."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ledger import create_key_file
from seatledger.config.ca import create_ca, master_names
from seatledger.config.keys import create_signing_key, ensure_export_keys, write_private
from seatledger.config.licence_file import LicenceSignatureError, minisign_key_fingerprint
from seatledger.config.settings import Config, Layout, load_config, render_config
from seatledger.config.store import open_ledger
from seatledger.services.errors import Refused


def init_data_dir(root: Path, *, origin: str | None = None, store_url: str | None = None,
                  vendor_key: Path | None = None, history: bool = True,
                  also_names: Sequence[str] = ()) -> Config:
    """Create the data directory ``root`` (0700) and everything in it; returns its config.

    ``vendor_key`` is the vendor's licence-signing public key, pinned here: only licences it
    signed can be installed. ``history`` begins the master's history (trial mode until a
    licence is installed); a recipient's data directory, which imports another master's
    history, begins none.

    ``also_names``: more host names or IP addresses for the master's certificate (a standby
    master's, see docs/standby.md).

    Raises:
        Refused: ``root`` already holds a data directory, ``vendor_key`` is not a key, or a
            name in ``also_names`` is neither a host name nor an IP address.
    """
    try:
        master_names(also_names)
    except ValueError as e:
        raise Refused(f"--also-name: {e}") from None
    pinned = None
    if vendor_key is not None:
        try:
            pinned = vendor_key.read_text(encoding="ascii")
            minisign_key_fingerprint(pinned)
        except (OSError, UnicodeDecodeError) as e:
            raise Refused(f"cannot read the vendor key {vendor_key}: {e}") from None
        except LicenceSignatureError:
            raise Refused(f"{vendor_key} is not a minisign public key (the vendor's "
                          "'seatledger vendor key' file)") from None
    layout = Layout(root)
    if layout.config.exists() or layout.keys.exists():
        raise Refused(f"{root} already holds a seatledger data directory; not overwriting it")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    root.chmod(0o700)
    origin = origin or f"seatledger.{os.urandom(4).hex()}"
    write_private(layout.config, render_config(origin, store_url).encode())
    create_key_file(layout.at_rest_key)
    layout.keys.chmod(0o700)
    create_signing_key(layout.signing_key, layout.signing_pub)
    create_ca(layout.ca_dir, origin, also_names)
    ensure_export_keys(layout)
    if pinned is not None:
        write_private(layout.vendor_key, pinned.encode("ascii"))
    config = load_config(root)
    with open_ledger(config, create=True) as app:
        if history:
            app.start_trial()
    return config


__all__ = ["init_data_dir"]
