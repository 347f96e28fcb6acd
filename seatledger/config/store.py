"""Opening the data directory's ledger with its keys (every process that reads or writes it)."""

from __future__ import annotations

from ledger.application import LedgerApp
from ledger.clock import Clock
from ledger.persistence.store import load_key_file
from seatledger.config.keys import load_public_key, load_signing_key
from seatledger.config.settings import Config


def open_ledger(config: Config, clock: Clock | None = None, *, read_only: bool = False) -> LedgerApp:
    """Open the data directory's ledger with its keys. Raises LedgerError subclasses."""
    layout = config.layout
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
        read_only=read_only,
        note_key=note_key,
    )
