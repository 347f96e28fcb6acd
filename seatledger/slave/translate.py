"""Translation between the slave's journal types and the wire's: one function per crossing.

The master meets the wire types in :mod:`seatledger.master.translate`; these are the slave's
side of the same boundary. The slave never receives offline events or held seats, so each
crossing goes one way only.
"""

from __future__ import annotations

from seatledger.slave.journal import JournalEntry, LocalSeat
from transport import HeldSeat, OfflineEvent


def offline_event(entry: JournalEntry) -> OfflineEvent:
    """A journalled event, as the Sync carries it."""
    return OfflineEvent(entry.seq, entry.kind, entry.user, entry.agent_class, entry.tenant,
                        entry.campaign, entry.occurred_at.timestamp(), entry.reason)


def held_seat(seat: LocalSeat) -> HeldSeat:
    """A seat held now, as the Sync carries it."""
    return HeldSeat(seat.user, seat.agent_class, seat.tenant, seat.campaign)


__all__ = ["held_seat", "offline_event"]
