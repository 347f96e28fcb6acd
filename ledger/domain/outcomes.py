"""What the ledger's commands give back, and what sites hand it: small frozen values.

:data:`Outcome` is the union :meth:`ledger.LedgerApp.execute` returns one of per command.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from ledger.domain.values import RefusalReason, ReleaseReason, Severity, pickled_as_fields


@pickled_as_fields
@attrs.frozen
class Notice:
    """An abuse notice to broadcast to every connected site."""

    pool: str  # the pool, or the agent class of an hours notice, or "licence" / "export"
    severity: Severity
    deadline: datetime | None
    detail: str
    kind: str = "grace"  # "hours": an hours licence's notice (20/10/5 % left, used up)


@pickled_as_fields
@attrs.frozen
class Grant:
    """Outcome of a granted seat (also returned for an idempotent repeat)."""

    site: str
    user: str
    seat: int
    agent_class: str
    overuse: bool
    deadline: datetime | None
    repeated: bool = False
    opened: tuple[str, ...] = ()  # pools whose grace window this grant opened
    notices: tuple[Notice, ...] = ()  # the notices recorded for those openings, to broadcast


@pickled_as_fields
@attrs.frozen
class Refusal:
    """Outcome of a refused seat, with the recorded reason code."""

    site: str
    user: str
    reason: RefusalReason | str  # a str: ``upstream:<reason>``, refused by the upstream
    detail: str


UPSTREAM_PREFIX = "upstream:"
"""A chained master records a seat its upstream refused as ``upstream:<the upstream's reason>``."""


@attrs.frozen
class Assessment:
    """What an acquire would decide now, decided without recording anything (a chained
    master asks its upstream only for seats it would grant itself)."""

    grant: bool
    repeated: bool = False  # the user holds a seat already: nothing to ask upstream
    overuse: bool = False
    reason: str = ""
    detail: str = ""


@pickled_as_fields
@attrs.frozen
class Release:
    site: str
    user: str
    seat: int
    reason: ReleaseReason


@attrs.frozen
class OfflineEvent:
    """A seat event a site journalled while it could not reach the master."""

    seq: int
    kind: str  # "grant" | "release"
    user: str
    agent_class: str
    occurred_at: datetime
    tenant: str = ""
    campaign: str = ""
    # Why the site released a seat by itself (a cut-off site releasing its seats:
    # ``site_cut_off``); empty for a user's own log-off.
    reason: str = ""


@attrs.frozen
class HeldSeat:
    """A seat a site says it holds now (its list on reconnection)."""

    user: str
    agent_class: str
    tenant: str = ""
    campaign: str = ""


@attrs.frozen
class SyncResult:
    applied: int
    skipped: int
    reconciled: int
    notices: tuple[Notice, ...] = ()  # grace windows the site's offline over-use opened


@pickled_as_fields
@attrs.frozen
class Failure:
    """A command the ledger rejected without recording anything (e.g. an unknown seat)."""

    error: str
    kind: str


Outcome = (Grant | Refusal | Release | SyncResult | Failure | Assessment | list[Notice] | bool
           | None)
"""One command's outcome: AcquireSeat gives a Grant or Refusal, ReleaseSeat a Release,
SyncSite a SyncResult, Tick the notices to broadcast, ConnectSite and DisconnectSite None;
any of them a Failure when the ledger rejected it without recording anything."""
