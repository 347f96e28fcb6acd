"""Opening the data directory's ledger with its keys (every process that reads or writes it)."""

from __future__ import annotations

from ledger.application import LedgerApp
from ledger.clock import Clock
from ledger.errors import StoreError
from ledger.persistence.fencing import Fence
from ledger.persistence.store import load_key_file, sqlite_path
from seatledger.config.keys import load_public_key, load_signing_key
from seatledger.config.settings import Config


def open_ledger(config: Config, clock: Clock | None = None, *, read_only: bool = False,
                create: bool = False, fence: Fence | None = None) -> LedgerApp:
    """Open the data directory's ledger with its keys; ``create`` only for a new data
    directory. Raises LedgerError subclasses (StoreError for a missing or damaged store)."""
    layout = config.layout
    path = sqlite_path(config.store_url)
    if not create and path is not None and (not path.exists() or path.stat().st_size == 0):
        raise StoreError(f"the store /{str(path).lstrip('/')} is missing or empty: nothing was created; "
                         "restore it from a backup (or run 'seatledger init' in a new directory)")
    key = load_key_file(layout.at_rest_key)
    signing_key = load_signing_key(layout.signing_key)
    layout.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    # A recipient's data directory holds history signed by the master it imported.
    origin_key = layout.keys / "origin-checkpoint.pub"
    note_key = load_public_key(origin_key) if origin_key.exists() else None
    return LedgerApp(
        config.store_url,
        key=key,
        signing_key=signing_key,
        clock=clock,
        origin=config.origin,
        checkpoint_file=layout.checkpoint,
        snapshot_every=config.snapshot_every,
        checkpoint_every=config.checkpoint_every,
        sign_every_records=config.sign_every_records,
        sign_every_seconds=config.sign_every_seconds,
        snapshot_when_idle=config.snapshot_when_idle,
        read_only=read_only,
        note_key=note_key,
        fence=fence,
    )
