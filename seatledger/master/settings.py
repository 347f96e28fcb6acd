"""The master daemon's tunables, in one frozen value (built by ``bootstrap.master_settings``)."""

from __future__ import annotations

import attrs


@attrs.frozen
class MasterSettings:
    heartbeat_interval: float = 10.0
    missed_heartbeats: int = 3
    max_batch: int = 2000
    queue_size: int = 20000
    outbox_size: int = 4096
    handshake_timeout: float = 10.0
    # Connections that have not finished their TLS handshake: at most this many in all, and
    # this many from one remote address. Beyond either cap a connection is closed at once,
    # before any TLS work (issue 9, section 5: idle connections must not exhaust the master).
    max_pending_handshakes: int = 1000
    max_pending_handshakes_per_address: int = 64
    # How often, at least, the ledger is re-read for an operator's changes (a site enrolled
    # or revoked from the command line while the master runs). Cheap when nothing changed.
    refresh_interval: float = 1.0
    # While the store cannot be written (disk full, database gone), how often a batch is
    # tried again; requests meanwhile are refused at once with ``store_unavailable``.
    store_retry_interval: float = 5.0
    # Commit in a worker thread so the event loop keeps serving during the commit. Tests on
    # trio's MockClock turn it off: a thread looks idle to the clock, which would jump ahead.
    worker_thread: bool = True
    # The name this master's audit trail is signed under ([seal] origin), told to its sites
    # in Welcome (a chained master downstream records it).
    origin: str = ""


__all__ = ["MasterSettings"]
