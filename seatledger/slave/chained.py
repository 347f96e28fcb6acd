"""The slave connector of a chained master: a master that is also a site of an upstream
master (a "supermaster"), through the bundle the upstream enrolled it with.

It is the site's connector (:class:`~seatledger.slave.connector.SlaveConnector`: the
permanent link, the journal, the cut-off rules) with two differences, both from issue 14:

* While the upstream is unreachable, the downstream master's own licence acts as its local
  limit: a seat the master has already decided to grant is granted offline and journalled,
  whatever limits the upstream's Welcome gave. Only the cut-off rules (the demo limit once
  cut off) and a full journal refuse.
* The upstream's notices are handed on (the master broadcasts them to its own sites), as
  are the seats an operator upstream released (the master releases them too, and tells its
  site), and each synced session is reported, with the upstream's origin, so that the
  master can record which upstream it is chained under.

The seats it holds upstream are named ``SITE/USER`` (the downstream site and its user), so
that two downstream sites' users never collide upstream.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType

from seatledger.config.bundle import Bundle
from seatledger.slave.connector import SeatAnswer, SlaveConnector, SlaveSettings
from seatledger.slave.errors import SeatRefusedError
from seatledger.slave.link import MasterLink, SyncPayload
from seatledger.slave.policy import SeatStatus, SlaveState
from transport import Notice, Reclaimed, SyncDone

UPSTREAM_ANSWER_TIMEOUT = 2.0
"""Seconds a chained master waits for its upstream: shorter than a slave's own wait for its
master (3 s by default), so that the site hears the downstream's answer in time."""
UPSTREAM_SETTINGS = SlaveSettings(answer_timeout=UPSTREAM_ANSWER_TIMEOUT)


class ChainedConnector:
    """A chained master's link to its upstream. ``async with`` it to keep the link."""

    def __init__(self, bundle: Bundle, state_dir: Path, *,
                 settings: SlaveSettings = UPSTREAM_SETTINGS,
                 now: Callable[[], datetime] | None = None) -> None:
        self.site = bundle.site
        """This master's site name at the upstream."""
        self.ca_sha256 = hashlib.sha256(ssl.PEM_cert_to_DER_cert(bundle.ca_pem)).hexdigest()
        self.on_notice: Callable[[Notice], None] | None = None
        self.on_synced: Callable[[str], None] | None = None
        """Called with the upstream's origin each time a session with it is synced."""
        self.on_reclaimed: Callable[[str], None] | None = None
        """Called with a seat's name when an operator upstream released it."""
        self._slave = _Connector(self, bundle, state_dir, settings=settings, now=now)

    async def __aenter__(self) -> ChainedConnector:
        await self._slave.__aenter__()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._slave.__aexit__(exc_type, exc, tb)

    @property
    def online(self) -> bool:
        return self._slave.state is SlaveState.ONLINE

    @property
    def state(self) -> str:
        return str(self._slave.state)

    @property
    def connected_to(self) -> str | None:
        return self._slave.connected_to

    def held(self) -> dict[str, tuple[str, str, str]]:
        """The seats held upstream (or journalled for it): name → (class, tenant, campaign)."""
        return {user: (s.agent_class, s.tenant, s.campaign)
                for user, s in self._slave.seats().items()}

    async def ask(self, user: str, agent_class: str, tenant: str,
                  campaign: str) -> tuple[str, str] | None:
        """Ask the upstream for a seat; None if granted (by the upstream, or offline by the
        slave's rules), else the refusal's (reason, detail)."""
        try:
            await self._slave.acquire(user, agent_class, tenant, campaign)
        except SeatRefusedError as e:
            return e.reason, e.detail
        return None

    async def give_back(self, user: str) -> bool:
        """Release a seat upstream (offline: journalled). False if the upstream could not
        record it now (its store is unavailable): try again later."""
        try:
            await self._slave.release(user)
        except SeatRefusedError as e:
            return e.reason == "unknown_seat"
        return True


class _Connector(SlaveConnector):
    def __init__(self, owner: ChainedConnector, bundle: Bundle, state_dir: Path, *,
                 settings: SlaveSettings, now: Callable[[], datetime] | None) -> None:
        super().__init__(bundle, state_dir, settings=settings, now=now)
        self._owner = owner

    def _acquire_offline(self, user: str, agent_class: str, tenant: str,
                         campaign: str) -> SeatAnswer:
        # The downstream master's licence admitted this seat already: it is the local limit.
        if self.state is SlaveState.CUT_OFF or self.journal.count() >= self.settings.journal_cap:
            return super()._acquire_offline(user, agent_class, tenant, campaign)
        seat = self.journal.grant_offline(user, agent_class, tenant, campaign, self._now(),
                                          SeatStatus.OFFLINE)
        self._journal_grew()
        return SeatAnswer(user, agent_class, seat.seat, seat.status)

    def _notice(self, notice: Notice) -> None:
        super()._notice(notice)
        if self._owner.on_notice is not None:
            self._owner.on_notice(notice)

    def _reclaimed(self, reclaimed: Reclaimed) -> None:
        super()._reclaimed(reclaimed)
        if self._owner.on_reclaimed is not None:
            self._owner.on_reclaimed(reclaimed.user)

    def _synced(self, link: MasterLink, done: SyncDone, sent: SyncPayload) -> None:
        super()._synced(link, done, sent)
        if self._owner.on_synced is not None:
            self._owner.on_synced(link.origin)


__all__ = ["UPSTREAM_ANSWER_TIMEOUT", "UPSTREAM_SETTINGS", "ChainedConnector"]
