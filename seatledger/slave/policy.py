"""The slave's offline rules, sans-IO: DESIGN.md section 5, and section 3's "Site limits and
connection loss" as the site sees it.

No trio, no I/O and no clock here: the connector passes the time in, tells the policy what
happened (a connection round failed, a session was synced, the link was lost, the journal
grew) and carries out what comes back (alerts to raise, seats to drop at cut-off). Decisions
on a log-on the master cannot answer come from :meth:`OfflinePolicy.decide`.

States (:class:`SlaveState`, stored and shown as today's strings):

* CONNECTING - started, no round finished yet. Log-ons the master cannot answer are decided
               as OFFLINE would (or as CUT_OFF, if the slave was cut off when it stopped).
* ONLINE     - synced with a master; the master's answer is the answer.
* OFFLINE    - the master is unreachable. Log-ons are granted up to the site's local limit
               per class (the limit the master sent in Welcome, remembered across restarts);
               a class without a local limit is refused offline.
* CUT_OFF    - after ``cutoff_attempts`` failed rounds counted after the first (or at once for
               a site with no local limit at all). The seats held are dropped, with the
               release reason ``site_cut_off``; at most ``demo_limit`` agents may log on.

Counting rounds: the round that first finds the master gone is not counted (it only moves
the slave OFFLINE); each later failed round is. The count, the limits and the cut-off are
:class:`Remembered` across restarts, so a slave restarted during an outage neither cuts
itself off at once (it still knows its limits) nor starts its count afresh (the first round
after a restart during an outage counts).

The journal holds at most ``journal_cap`` events. Alerts of rising severity are raised as it
fills (half, 80 %, 95 %, full); when it is full, log-ons are refused, never lost.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime

import attrs

from ledger import within_local_limit


class SlaveState(enum.StrEnum):
    ONLINE = "online"
    CONNECTING = "connecting"
    OFFLINE = "offline"
    CUT_OFF = "cut_off"


class SeatStatus(enum.StrEnum):
    """How a seat was granted: by the master (normal or over-use) or by the slave alone."""

    NORMAL = "normal"
    OVERUSE = "overuse"
    OFFLINE = "offline"
    DEMO = "demo"


class AlertSeverity(enum.StrEnum):
    """The slave's own alerts (journal fill, connection) and the master's notice words."""

    INFO = "info"
    WARNING = "warning"
    HIGH = "high"
    URGENT = "urgent"
    CRITICAL = "critical"
    FULL = "full"


class RefusalReason(enum.StrEnum):
    """Why the slave refused a log-on by itself."""

    JOURNAL_FULL = "journal_full"
    CUT_OFF = "cut_off"
    NO_LOCAL_LIMIT = "no_local_limit"
    SITE_LIMIT = "site_limit"


# (fill, severity): an alert when the journal first reaches each fill since the last sync.
JOURNAL_ALERTS: tuple[tuple[float, AlertSeverity], ...] = (
    (0.5, AlertSeverity.WARNING),
    (0.8, AlertSeverity.HIGH),
    (0.95, AlertSeverity.CRITICAL),
    (1.0, AlertSeverity.FULL),
)


@attrs.frozen
class OfflineRules:
    """The numbers of the offline rules (DESIGN.md section 5's defaults)."""

    cutoff_attempts: int = 3
    demo_limit: int = 5
    journal_cap: int = 1_000_000
    retry_interval: float = 300.0
    cutoff_retry: float = 900.0


@attrs.frozen
class Alert:
    severity: AlertSeverity
    text: str
    at: datetime


@attrs.frozen
class OfflineGrant:
    """Grant the log-on locally, journalled, with ``status`` OFFLINE or DEMO."""

    status: SeatStatus


@attrs.frozen
class OfflineRefusal:
    reason: RefusalReason
    detail: str


@attrs.frozen
class RoundFailed:
    """What a failed connection round asks of the connector."""

    alerts: tuple[Alert, ...]
    cut_off: bool
    """True once, when the slave is cut off: drop every seat held (reason ``site_cut_off``)."""


def _copy_limits(limits: Mapping[str, int]) -> dict[str, int]:
    return dict(limits)


@attrs.frozen
class Remembered:
    """The part of the policy that outlives a restart (the journal keeps it)."""

    limits: Mapping[str, int] = attrs.field(factory=dict, converter=_copy_limits)
    failed_rounds: int = 0
    outage: bool = False
    """A round failed or the link was lost since the last sync."""
    cut_off: bool = False


class OfflinePolicy:
    """The offline rules for one site; see the module docstring."""

    def __init__(self, rules: OfflineRules = OfflineRules(),
                 remembered: Remembered = Remembered()) -> None:
        self.rules = rules
        self.limits: dict[str, int] = dict(remembered.limits)
        self.failed_rounds = remembered.failed_rounds
        self.state = SlaveState.CUT_OFF if remembered.cut_off else SlaveState.CONNECTING
        self._outage = remembered.outage or remembered.cut_off
        # The round that first finds the master gone is not counted, unless the outage
        # began before a restart.
        self._count_next_round = self._outage
        self._journal_level = 0

    def remembered(self) -> Remembered:
        return Remembered(self.limits, self.failed_rounds, self._outage,
                          self.state is SlaveState.CUT_OFF)

    @property
    def retry_delay(self) -> float:
        """Seconds to wait after a failed round before the next."""
        return (self.rules.cutoff_retry if self.state is SlaveState.CUT_OFF
                else self.rules.retry_interval)

    # ------------------------------------------------------------------ log-ons
    def decide(self, agent_class: str, held_by_class: Mapping[str, int],
               journal_size: int) -> OfflineGrant | OfflineRefusal:
        """Decide a log-on the master cannot answer, given the seats held now per class and
        the number of events in the journal."""
        cap = self.rules.journal_cap
        if journal_size >= cap:
            return OfflineRefusal(RefusalReason.JOURNAL_FULL,
                                  "the offline journal is full: log-ons are refused until a "
                                  "master is reachable")
        if self.state is SlaveState.CUT_OFF:
            if sum(held_by_class.values()) >= self.rules.demo_limit:
                return OfflineRefusal(RefusalReason.CUT_OFF,
                                      f"cut off from the master: demo limit of "
                                      f"{self.rules.demo_limit} agents reached")
            return OfflineGrant(SeatStatus.DEMO)
        if agent_class not in self.limits:
            return OfflineRefusal(RefusalReason.NO_LOCAL_LIMIT,
                                  f"the master is unreachable and this site has no local "
                                  f"{agent_class} limit")
        if not within_local_limit(held_by_class, self.limits, agent_class):
            return OfflineRefusal(RefusalReason.SITE_LIMIT,
                                  f"offline: local {agent_class} limit "
                                  f"{self.limits[agent_class]} reached")
        return OfflineGrant(SeatStatus.OFFLINE)

    def journal_grew(self, journal_size: int, now: datetime) -> tuple[Alert, ...]:
        """Alerts for each fill level the journal has reached for the first time."""
        cap = self.rules.journal_cap
        fill = journal_size / cap
        alerts: list[Alert] = []
        for level, (threshold, severity) in enumerate(JOURNAL_ALERTS, start=1):
            if fill >= threshold and self._journal_level < level:
                self._journal_level = level
                alerts.append(Alert(severity, f"offline journal {fill:.0%} full "
                                              f"({journal_size} of {cap})", now))
        return tuple(alerts)

    # ------------------------------------------------------------------ the link
    def round_failed(self, now: datetime) -> RoundFailed:
        """No master could be reached in one round over the addresses."""
        if self._count_next_round:
            self.failed_rounds += 1
        self._count_next_round = True
        self._outage = True
        alerts: list[Alert] = []
        if self.state in (SlaveState.CONNECTING, SlaveState.ONLINE):
            self.state = SlaveState.OFFLINE
            alerts.append(Alert(AlertSeverity.WARNING,
                                "master unreachable: working offline within local limits", now))
        cut_off = False
        if self.state is SlaveState.OFFLINE and (
                not self.limits or self.failed_rounds >= self.rules.cutoff_attempts):
            self.state = SlaveState.CUT_OFF
            cut_off = True
            alerts.append(Alert(AlertSeverity.CRITICAL,
                                f"cut off from the master: campaigns stopped, demo limit of "
                                f"{self.rules.demo_limit} agents", now))
        return RoundFailed(tuple(alerts), cut_off)

    def synced(self, limits: Mapping[str, int], now: datetime, applied: int,
               skipped: int) -> tuple[Alert, ...]:
        """A master welcomed the site with ``limits`` and applied its journal."""
        alerts: tuple[Alert, ...] = ()
        if self.state in (SlaveState.OFFLINE, SlaveState.CUT_OFF):
            alerts = (Alert(AlertSeverity.INFO,
                            f"master reachable again: journal synced ({applied} applied, "
                            f"{skipped} already known)", now),)
        self.state = SlaveState.ONLINE
        self.limits = dict(limits)
        self.failed_rounds = 0
        self._outage = False
        self._count_next_round = False
        self._journal_level = 0
        return alerts

    def link_lost(self, now: datetime) -> tuple[Alert, ...]:
        """A synced session ended."""
        self._count_next_round = False
        self._outage = True
        if self.state is SlaveState.ONLINE:
            self.state = SlaveState.OFFLINE
            return (Alert(AlertSeverity.WARNING,
                          "lost the master: working offline within local limits", now),)
        return ()


__all__ = ["JOURNAL_ALERTS", "Alert", "AlertSeverity", "OfflineGrant", "OfflinePolicy",
           "OfflineRefusal", "OfflineRules", "RefusalReason", "Remembered", "RoundFailed",
           "SeatStatus", "SlaveState"]
