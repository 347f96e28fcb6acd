"""Commands the master's connections send to the ledger in batches, and their dispatch.

The daemon's group commit collects these from many connections, hands a list to
:meth:`ledger.LedgerApp.execute`, and gets one outcome per command back after the batch
has been committed.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from ledger.domain.licence import Licence
from ledger.domain.outcomes import Failure, HeldSeat, OfflineEvent, Outcome
from ledger.domain.values import ReleaseReason, pickled_as_fields
from ledger.errors import LedgerError

__all__ = ["AcquireSeat", "AssessSeat", "Command", "LinkUpstream", "ConnectSite", "DisconnectSite", "Failure", "Outcome",
           "ReleaseSeat", "SyncSite", "Tick", "run_command"]


@pickled_as_fields
@attrs.frozen
class AcquireSeat:
    site: str
    user: str
    agent_class: str
    tenant: str = ""
    campaign: str = ""
    # A chained master's upstream refused the seat: recorded as refused upstream:<reason>.
    upstream_refusal: str = ""
    upstream_detail: str = ""


@attrs.frozen
class AssessSeat:
    """What ``acquire`` would decide now, recording nothing (answered an Assessment)."""

    acquire: AcquireSeat


@attrs.frozen
class LinkUpstream:
    """Record the upstream master this one is chained under (answered whether it recorded)."""

    upstream: str
    site: str
    ca: str


@pickled_as_fields
@attrs.frozen
class ReleaseSeat:
    site: str
    user: str
    reason: str = ReleaseReason.LOGOFF


@attrs.frozen
class ConnectSite:
    site: str


@attrs.frozen
class DisconnectSite:
    site: str
    reason: str = "connection lost"


@attrs.frozen
class SyncSite:
    site: str
    events: tuple[OfflineEvent, ...]
    held: tuple[HeldSeat, ...]


@attrs.frozen
class Tick:
    """Fire whatever is due (grace deadlines, notices, cut-offs, expiry)."""


Command = (AcquireSeat | AssessSeat | ReleaseSeat | ConnectSite | DisconnectSite | SyncSite
           | LinkUpstream | Tick)


def run_command(licence: Licence, now: datetime, command: Command) -> Outcome:
    """Apply one command to the licence; ledger errors become a :class:`Failure` outcome."""
    try:
        match command:
            case AcquireSeat(site, user, agent_class, tenant, campaign, refusal, detail):
                return licence.acquire(now, site, user, agent_class, tenant, campaign,
                                       refusal, detail)
            case AssessSeat(AcquireSeat(site, user, agent_class, _, campaign)):
                return licence.assess(now, site, user, agent_class, campaign)
            case LinkUpstream(upstream, site, ca):
                return licence.link_upstream(now, upstream, site, ca)
            case ReleaseSeat(site, user, reason):
                return licence.release(now, site, user, reason)
            case ConnectSite(site):
                licence.connect_site(now, site)
                return None
            case DisconnectSite(site, reason):
                licence.disconnect_site(now, site, reason)
                return None
            case SyncSite(site, events, held):
                return licence.sync(now, site, events, held)
            case Tick():
                return licence.tick(now)
    except LedgerError as e:
        return Failure(str(e), type(e).__name__)
    raise TypeError(f"not a ledger command: {command!r}")
