"""Chaining: this master is also a site of an upstream master (a "supermaster").

Every registration must pass this master's licence and site rules and then the upstream's;
a seat is granted only when both grant it (issue 14, section 1). For each Acquire:

1. this master decides without recording (:class:`ledger.AssessSeat`, in the writer);
2. if it would grant, it asks the upstream (within a timeout shorter than a slave's own);
3. it records the outcome in its next batch: its own grant (with its own over-use flag) or
   a refusal, recorded and answered as ``upstream:<the upstream's reason>``.

Each master keeps its own grace windows: a grant may be over-use at one level and normal at
the other. The upstream's notices are broadcast to this master's sites.

Releases go up by reconciliation rather than one by one: after any batch that may have
released a seat (a log-off, a sync, an operator's command, a revoked site) and after each
session with the upstream is synced, the seats held upstream are compared with the seats
this master holds. A seat held upstream that is no longer held here is given back; a seat
held here that the upstream does not know of (granted offline by one of our sites, or before
the chain existed) is asked for, while the upstream is reachable. A seat whose acquire is in
flight is left alone. So every path that frees a seat frees it upstream too, and a seat the
upstream granted but this master then did not record (its state changed in between, or its
store failed) is given back.

A seat an operator upstream released (``site release`` there) is released here too, with
reason ``operator``, and this master's site is told, as if the operator were ours.

When the upstream is unreachable this master behaves as a slave does, through the slave
connector's rules (:mod:`seatledger.slave.chained`): its own licence is its local limit, what
it grants is journalled, the cut-off rules apply, and the next session syncs the journal
exactly once.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

import attrs
import trio

from ledger import (
    AcquireSeat,
    Assessment,
    AssessSeat,
    Grant,
    LedgerApp,
    LinkUpstream,
    Refusal,
)
from seatledger.master.admin import run_operation
from seatledger.master.writer import OperatorCall, Writer
from transport import Notice

log = logging.getLogger("seatledger.master")

RECONCILE_DELAY = 0.05
"""Seconds a reconciliation waits after being asked for, so that a burst of releases is
handled in one pass."""
RETRY_DELAY = 5.0
"""Seconds before a release the upstream could not record is tried again."""


class UpstreamConnector(Protocol):
    """The link to the upstream (:class:`seatledger.slave.chained.ChainedConnector`)."""

    site: str
    ca_sha256: str
    on_notice: Callable[[Notice], None] | None
    on_synced: Callable[[str], None] | None
    on_reclaimed: Callable[[str], None] | None

    @property
    def online(self) -> bool: ...

    @property
    def state(self) -> str: ...

    def held(self) -> dict[str, tuple[str, str, str]]: ...

    async def ask(self, user: str, agent_class: str, tenant: str,
                  campaign: str) -> tuple[str, str] | None: ...

    async def give_back(self, user: str) -> bool: ...

    async def __aenter__(self) -> Any: ...

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> Any: ...


def upstream_name(site: str, user: str) -> str:
    """The name a seat of ours goes by upstream: the site and its user."""
    return f"{site}/{user}"


class Upstream:
    """The chain's logic at this master; :meth:`run` it in the master's nursery."""

    def __init__(self, connector: UpstreamConnector, app: LedgerApp, writer: Writer,
                 broadcast: Callable[[Notice], None]) -> None:
        self.connector = connector
        self.app = app
        self.writer = writer
        connector.on_notice = broadcast
        connector.on_synced = self._synced
        connector.on_reclaimed = self._reclaimed
        self._reclaims: list[str] = []
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._refused_later: set[str] = set()
        """Seats held here that the upstream refused when asked afterwards: not asked
        again until the next session with it."""
        self._origin: str | None = None
        self._wanted = trio.Event()

    @property
    def site(self) -> str:
        return self.connector.site

    # ------------------------------------------------------------------ one acquire
    async def acquire(self, command: AcquireSeat, reply: Callable[[Any], None]) -> None:
        """Decide ``command`` here and upstream, record the outcome, and ``reply`` it."""
        name = upstream_name(command.site, command.user)
        asked = False
        self._in_flight[name] += 1
        try:
            assessed = await self.writer.submit(AssessSeat(command))
            if isinstance(assessed, Assessment) and assessed.grant and not assessed.repeated:
                asked = True
                refusal = await self.connector.ask(name, command.agent_class, command.tenant,
                                                   command.campaign)
                if refusal is not None:
                    # Recorded and sent on as upstream:<reason>, within the wire's 256.
                    command = attrs.evolve(command, upstream_refusal=refusal[0][:240],
                                           upstream_detail=refusal[1][:3000])
            outcome = await self.writer.submit(command)
        finally:
            self._in_flight[name] -= 1
            if not self._in_flight[name]:
                del self._in_flight[name]
        reply(outcome)
        if asked and not isinstance(outcome, Grant):
            self.wanted()  # granted upstream but not here: give it back

    # ------------------------------------------------------------------ reconciling
    def wanted(self) -> None:
        """Ask for a reconciliation soon."""
        self._wanted.set()

    def after_batch(self, outcomes: list[Any]) -> None:
        """Called after each of the writer's batches: reconcile if a seat may have gone."""
        for outcome in outcomes:
            if outcome is None or isinstance(outcome, bool | Grant | Refusal | Assessment):
                continue
            if isinstance(outcome, list) and not outcome:
                continue  # an idle tick
            self.wanted()
            return

    def _reclaimed(self, name: str) -> None:
        """An operator upstream released one of our seats: release it here too."""
        self._reclaims.append(name)
        self.wanted()

    async def _release_reclaimed(self) -> None:
        reclaims, self._reclaims = self._reclaims, []
        for name in reclaims:
            site, _, user = name.partition("/")
            args: dict[str, Any] = {"name": site, "user": user}
            outcome = await self.writer.submit(OperatorCall(
                "site.release", functools.partial(run_operation, op="site.release", args=args),
                args))
            log.warning("an operator at the upstream released seat %s: released here too "
                        "(%s)", name, "done" if isinstance(outcome, dict) and
                        "bad_request" not in outcome else outcome)

    def _synced(self, origin: str) -> None:
        self._origin = origin
        self._refused_later.clear()
        self.wanted()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Keep the link to the upstream and reconcile when asked, until cancelled."""
        # Started first: the connector opens a nursery, which must not move with the task.
        task_status.started()
        async with self.connector:
            self.wanted()
            retry = False
            while True:
                with trio.move_on_after(RETRY_DELAY if retry else math.inf):
                    await self._wanted.wait()
                self._wanted = trio.Event()
                await trio.sleep(RECONCILE_DELAY)
                await self._record_link()
                await self._release_reclaimed()
                retry = await self.reconcile()

    async def _record_link(self) -> None:
        origin, self._origin = self._origin, None
        if origin:
            linked = await self.writer.submit(LinkUpstream(origin, self.site,
                                                           self.connector.ca_sha256))
            if linked is True:
                log.info("chained under the upstream master %s as site %s", origin, self.site)

    async def reconcile(self) -> bool:
        """Give back upstream what is no longer held here; ask for what is held here only.
        Returns whether a release must be tried again (the upstream could not record it)."""
        async with self.writer.exclusive():  # the aggregate is not changing meanwhile
            here = {upstream_name(site.name, user): (seat.agent_class, seat.tenant,
                                                     seat.campaign)
                    for site in self.app.licence.sites.values()
                    for user, seat in site.seats.items()}
        there = self.connector.held()
        retry = False
        for name in sorted(set(there) - set(here)):
            if name in self._in_flight:
                continue
            if not await self.connector.give_back(name):
                retry = True
        if self.connector.online:
            for name in sorted(set(here) - set(there)):
                if name in self._in_flight or name in self._refused_later:
                    continue
                agent_class, tenant, campaign = here[name]
                refusal = await self.connector.ask(name, agent_class, tenant, campaign)
                if refusal is not None:
                    self._refused_later.add(name)
                    log.warning("the upstream refused seat %s, held here: %s: %s", name,
                                *refusal)
        return retry


__all__ = ["RECONCILE_DELAY", "Upstream", "UpstreamConnector", "upstream_name"]
