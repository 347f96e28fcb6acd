"""The slave connector: a site's permanent link to the master, and its rules when cut off.

A dialler embeds it (``async with SlaveConnector(bundle, state_dir) as s: await
s.acquire(...)``) or runs it as a daemon with a local socket
(:mod:`seatledger.slave.local_socket`).

It composes three parts, each with one job:

* :mod:`~seatledger.slave.policy` - the offline rules (states, local limits, cut-off, demo
  limit, journal cap and its alerts), sans-IO;
* :mod:`~seatledger.slave.link` - the session with a master (connect, handshake, sync,
  requests and answers), over the transport's trio shell;
* :mod:`~seatledger.slave.journal` - the durable journal and seats, sealed at rest.

While ONLINE every acquire/release goes to the master, and its answer (given only after the
master has committed) is the answer. The master is waited for at most ``answer_timeout``
seconds (a connection being set up included); a master that does not answer in time is
treated as lost: the link is dropped and the request is decided by the offline rules and
journalled, so the Sync of the next session delivers it, and the master records it exactly
once (its per-site sequence numbers skip what it already has, and a grant for a user already
seated records nothing). A seat an operator at the master releases (``seatledger site
release``: the master sends Reclaimed) is dropped here, with a warning alert.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import attrs
import trio

from ledger import ReleaseReason
from seatledger.config.bundle import Bundle
from seatledger.slave.errors import LinkLostError, MasterUnreachableError, SeatRefusedError
from seatledger.slave.journal import Journal, LocalSeat, held_by_class
from seatledger.slave.link import (
    Answer,
    MasterLink,
    StandbyMasterError,
    SyncPayload,
    open_tls_stream,
    run_session,
)
from seatledger.slave.policy import (
    Alert,
    AlertSeverity,
    OfflinePolicy,
    OfflineRefusal,
    OfflineRules,
    SeatStatus,
    SlaveState,
)
from seatledger.slave.translate import held_seat, offline_event
from transport import Acquire, Granted, Notice, Reclaimed, Refused, Release, Released, SyncDone
from transport.tls import client_context

log = logging.getLogger("seatledger.slave")

ONLINE = SlaveState.ONLINE
CONNECTING = SlaveState.CONNECTING
OFFLINE = SlaveState.OFFLINE
CUT_OFF = SlaveState.CUT_OFF


@attrs.frozen
class SlaveSettings:
    retry_interval: float = 300.0
    cutoff_attempts: int = 3
    cutoff_retry: float = 900.0
    demo_limit: int = 5
    journal_cap: int = 1_000_000
    connect_timeout: float = 10.0
    answer_timeout: float = 3.0
    """Seconds an acquire or release waits for the master before the offline rules decide."""
    missed_heartbeats: int = 3
    standby_retry: float = 0.5
    """Seconds before trying again after a round in which a master answered ``standby``
    (a failover is under way: the standby takes over within its lease's time)."""
    failover_wait: float = 60.0
    """For how long such rounds are retried quickly, without counting as failed rounds."""

    def rules(self) -> OfflineRules:
        return OfflineRules(cutoff_attempts=self.cutoff_attempts, demo_limit=self.demo_limit,
                            journal_cap=self.journal_cap, retry_interval=self.retry_interval,
                            cutoff_retry=self.cutoff_retry)


@attrs.frozen
class SeatAnswer:
    user: str
    agent_class: str
    seat: str
    status: SeatStatus
    deadline: datetime | None = None


class SlaveConnector:
    """See the module docstring."""

    def __init__(self, bundle: Bundle, state_dir: Path, *,
                 settings: SlaveSettings = SlaveSettings(),
                 now: Callable[[], datetime] | None = None):
        self.bundle = bundle
        self.settings = settings
        self.state_dir = state_dir
        self.journal = Journal(state_dir / "journal.db", site_secret=bundle.key_pem.encode())
        self.policy = OfflinePolicy(settings.rules(), self.journal.remembered())
        self.context: ssl.SSLContext = client_context(bundle.ca_pem.encode(),
                                                      bundle.cert_pem.encode(),
                                                      bundle.key_pem.encode())
        self._now = now or (lambda: datetime.now(UTC))
        self.alerts: list[Alert] = []
        self.on_alert: Callable[[Alert], None] | None = None
        self.connected_to: str | None = None
        self.synced: list[tuple[int, int, int]] = []
        self._link: MasterLink | None = None
        self._online = trio.Event()
        self._connecting = False
        self._stopping = False
        self._stopped = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._standby_since: float | None = None

    @property
    def state(self) -> SlaveState:
        return self.policy.state

    @property
    def local_limits(self) -> dict[str, int]:
        return dict(self.policy.limits)

    @property
    def failed_rounds(self) -> int:
        return self.policy.failed_rounds

    # ---------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> SlaveConnector:
        self._nursery_manager = trio.open_nursery()
        self._nursery = await self._nursery_manager.__aenter__()
        self._nursery.start_soon(self._run)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        assert self._nursery is not None
        self._stopping = True
        try:
            link = self._link
            if link is not None:
                link.goodbye("slave stopping")
                with trio.move_on_after(1):
                    await self._stopped.wait()
        finally:  # cancelled from outside too: the nursery must close in this task
            self._nursery.cancel_scope.cancel()
            try:
                await self._nursery_manager.__aexit__(exc_type, exc, tb)
            finally:
                self.journal.close()

    async def wait_online(self) -> None:
        await self._online.wait()

    def seats(self) -> dict[str, LocalSeat]:
        return self.journal.seats()

    def _alert(self, alert: Alert) -> None:
        self.alerts.append(alert)
        log.info("%s: %s", alert.severity, alert.text)
        if self.on_alert is not None:
            self.on_alert(alert)

    def _alerts(self, alerts: tuple[Alert, ...]) -> None:
        for alert in alerts:
            self._alert(alert)

    # ---------------------------------------------------------------- the dialler's API
    async def acquire(self, user: str, agent_class: str, tenant: str = "",
                      campaign: str = "") -> SeatAnswer:
        """Ask for a seat; waits at most ``answer_timeout`` seconds for the master.

        Raises:
            SeatRefusedError: refused, by the master or by the offline rules; ``reason`` says
                why.
        """
        held = self.journal.seat(user)
        if held is not None:
            return SeatAnswer(user, held.agent_class, held.seat, held.status)
        deadline = trio.current_time() + self.settings.answer_timeout
        link = await self._wait_link(deadline)
        if link is not None:
            answer = await self._ask(
                link, Acquire(link.next_id(), user, agent_class, tenant, campaign), deadline)
            if isinstance(answer, Granted):
                deadline_at = (datetime.fromtimestamp(answer.grace_deadline, UTC)
                               if answer.grace_deadline is not None else None)
                status = SeatStatus(answer.status)
                self.journal.hold(LocalSeat(user, agent_class, tenant, campaign, answer.seat,
                                            status))
                return SeatAnswer(user, agent_class, answer.seat, status, deadline_at)
            if isinstance(answer, Refused):
                raise SeatRefusedError(answer.reason, answer.detail)
        return self._acquire_offline(user, agent_class, tenant, campaign)

    async def release(self, user: str) -> None:
        """Give a seat back; waits at most ``answer_timeout`` seconds for the master.

        Raises:
            SeatRefusedError: ``unknown_seat`` if no seat is held for ``user``; the master's
                reason if it could not record the release (the seat stays held).
        """
        held = self.journal.seat(user)
        if held is None:
            raise SeatRefusedError("unknown_seat", f"user {user!r} holds no seat here")
        deadline = trio.current_time() + self.settings.answer_timeout
        link = await self._wait_link(deadline)
        if link is not None:
            answer = await self._ask(link, Release(link.next_id(), user), deadline)
            if isinstance(answer, Released):
                if not answer.ok and answer.reason != "unknown_seat":
                    # Not recorded (the master's store is unavailable): the seat is still held.
                    raise SeatRefusedError(answer.reason, f"the master could not release "
                                                          f"{user!r}; try again")
                self.journal.drop(user)
                return
        self.journal.release_offline(user, self._now())
        self._journal_grew()

    def _acquire_offline(self, user: str, agent_class: str, tenant: str,
                         campaign: str) -> SeatAnswer:
        decision = self.policy.decide(agent_class, held_by_class(self.journal.seats()),
                                      self.journal.count())
        if isinstance(decision, OfflineRefusal):
            raise SeatRefusedError(decision.reason, decision.detail)
        seat = self.journal.grant_offline(user, agent_class, tenant, campaign, self._now(),
                                          decision.status)
        self._journal_grew()
        return SeatAnswer(user, agent_class, seat.seat, seat.status)

    def _journal_grew(self) -> None:
        self._alerts(self.policy.journal_grew(self.journal.count(), self._now()))

    async def _wait_link(self, deadline: float) -> MasterLink | None:
        """The synced link; while a session is being set up, wait for it until ``deadline``."""
        if self._link is None and self._connecting:
            with trio.move_on_at(deadline):
                await self._online.wait()
        return self._link

    async def _ask(self, link: MasterLink, message: Acquire | Release,
                   deadline: float) -> Answer | None:
        """The master's answer, or None if the link was lost or the master too slow."""
        with trio.move_on_at(deadline):
            try:
                return await self._request(link, message)
            except LinkLostError:
                return None
        log.warning("master %s did not answer within %.1fs: treating it as lost",
                    link.address, self.settings.answer_timeout)
        # What is decided offline now reaches the master in the Sync of the next session.
        link.abort()
        self._lost(link, "no answer in time")
        return None

    async def _request(self, link: MasterLink, message: Acquire | Release) -> Answer:
        return await link.request(message)

    # ---------------------------------------------------------------- connecting
    async def _run(self) -> None:
        try:
            while not self._stopping:
                standby = False
                for address in self.bundle.addresses():
                    self._connecting = True
                    try:
                        stream = await open_tls_stream(address, self.context,
                                                       timeout=self.settings.connect_timeout)
                        reason = await run_session(
                            stream, f"{address[0]}:{address[1]}", self.bundle.site,
                            payload=self._sync_payload, on_synced=self._synced,
                            on_notice=self._notice, on_reclaimed=self._reclaimed,
                            handshake_timeout=self.settings.connect_timeout,
                            missed_heartbeats=self.settings.missed_heartbeats)
                    except StandbyMasterError as e:
                        log.info("%s; trying the other master", e)
                        standby = True
                        continue
                    except MasterUnreachableError as e:
                        log.info("%s", e)
                        continue
                    finally:
                        self._connecting = False
                        if self._link is not None:
                            self._lost(self._link, "ended")
                    log.info("session ended: %s", reason.value if reason else "aborted")
                    break
                else:
                    if standby and self._failing_over():
                        await trio.sleep(self.settings.standby_retry)
                        continue
                    self._round_failed()
                    await trio.sleep(self.policy.retry_delay)
        finally:
            self._stopped.set()

    def _failing_over(self) -> bool:
        """Whether a round in which a master answered ``standby`` is retried soon without
        counting as failed: for ``failover_wait`` seconds after the first such round."""
        now = trio.current_time()
        if self._standby_since is None:
            self._standby_since = now
        return now - self._standby_since < self.settings.failover_wait

    def _sync_payload(self) -> SyncPayload:
        return SyncPayload(tuple(offline_event(e) for e in self.journal.pending()),
                           tuple(held_seat(s) for s in self.journal.seats().values()))

    def _synced(self, link: MasterLink, done: SyncDone, sent: SyncPayload) -> None:
        if sent.last_seq is not None:
            self.journal.trim(sent.last_seq)
        self.synced.append((done.applied, done.skipped, done.reconciled))
        self._alerts(self.policy.synced(link.limits, self._now(), done.applied, done.skipped))
        self.journal.remember(self.policy.remembered())
        self._connecting = False
        self._standby_since = None
        self._link = link
        self.connected_to = link.address
        self._online.set()
        if self.journal.count():
            # Decided offline while the Sync was on its way: the next session delivers it.
            log.info("journal grew during the sync: reconnecting to deliver it")
            link.abort()

    def _lost(self, link: MasterLink, why: str) -> None:
        """The synced session on ``link`` is over (once per session)."""
        if self._link is not link:
            return
        log.info("lost the session with %s: %s", link.address, why)
        self._link = None
        self.connected_to = None
        self._online = trio.Event()
        if self._stopping:
            return
        self._alerts(self.policy.link_lost(self._now()))
        self.journal.remember(self.policy.remembered())

    def _round_failed(self) -> None:
        now = self._now()
        result = self.policy.round_failed(now)
        if result.cut_off:
            self.journal.release_all(now, ReleaseReason.SITE_CUT_OFF.value)
        self.journal.remember(self.policy.remembered())
        self._alerts(result.alerts)
        if result.cut_off:
            self._journal_grew()

    def _notice(self, notice: Notice) -> None:
        self._alert(Alert(AlertSeverity(notice.severity), notice.text, self._now()))

    def _reclaimed(self, reclaimed: Reclaimed) -> None:
        """An operator at the master released a seat held here (recorded there): drop it,
        so that the dialler sees it gone and the next Sync does not report it held (which
        would count it again)."""
        held = self.journal.seat(reclaimed.user)
        if held is None:  # released here meanwhile: nothing is held to drop
            log.info("the master reclaimed %r, which holds no seat here", reclaimed.user)
            return
        self.journal.drop(reclaimed.user)
        self._alert(Alert(AlertSeverity.WARNING,
                          f"an operator at the master released the seat of user "
                          f"{reclaimed.user!r} ({held.agent_class}, seat {held.seat}); "
                          "it is no longer held here", self._now()))


__all__ = ["CONNECTING", "CUT_OFF", "OFFLINE", "ONLINE", "SeatAnswer", "SeatRefusedError",
           "SlaveConnector", "SlaveSettings", "SlaveState"]
