"""Hours licences: an agent class's pre-paid agent-hours, counted down while its seats are held.

A licence may give a class a number of agent-hours (``[hours] PRED = 5000``) instead of, or
as well as, a concurrent limit. The balance is kept per class as a frozen :class:`Balance`:
what was left at ``as_of`` (a record time) and how many seats of the class were held then.
Between two recorded events the number of seats held does not change, so the balance at any
later instant is ``left - held * elapsed``: exact (integer seat-microseconds), and replaying
the log gives the same balance every time. :func:`apply_hours_event` is the only code that
makes a new balance from an old one; the licence aggregate's event ``apply`` methods and the
live-status projection both call it, so the two cannot drift apart.

Theory of operation:

============  ==================================================================
kind          effect (every kind first settles the balance up to the event's record time)
============  ==================================================================
ADDED         a licence added ``added_us``: left and the notice base grow by it;
              notices and exhaustion start over
GRANTED       one more seat held
RELEASED      one seat fewer
CHARGED       ``charge_us`` used before the master knew of it: the time seats a site
              granted while offline were held before the site synced
NOTICE        a "N % left" notice was sent (``percent``; never raised again)
EXHAUSTED     the balance reached zero: new seats of the class are refused
============  ==================================================================

Rules: notices at :data:`NOTICE_PERCENTS` of the hours available since the latest licence
added hours (its ``base``); at zero new seats of the class are refused (``hours_exhausted``);
seats held are never revoked, so they keep burning (the balance may go below zero), and
the seats of a cut-off site keep burning too, as the master keeps counting them. Seats a
site granted offline are never refused either: when it syncs, the time each was held before
(to its release in the journal, or to the sync) is charged at once (``HoursCharged``), and
when that takes the balance below zero the ledger records ``HoursOverdrawn``. New requests
then see no hours left. The notices, exhaustion and the charge are decided by
:class:`ledger.domain.licence.Licence`; the balance arithmetic is here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

import attrs

US_PER_HOUR = 3_600_000_000
# Notices when this many percent of the hours are left (most severe last).
NOTICE_PERCENTS: tuple[int, ...] = (20, 10, 5)
_NONE_NOTIFIED = 100

__all__ = ["NOTICE_PERCENTS", "US_PER_HOUR", "Balance", "Due", "HoursEventKind",
           "apply_hours_event", "due", "next_due", "to_us"]


class HoursEventKind(StrEnum):
    ADDED = "added"
    GRANTED = "granted"
    RELEASED = "released"
    CHARGED = "charged"
    NOTICE = "notice"
    EXHAUSTED = "exhausted"


@attrs.frozen
class Balance:
    """One class's agent-hours. Field order is stored (in snapshots): append only.

    ``left_us`` is the balance at ``as_of`` (seat-microseconds; negative when overdrawn),
    ``held`` the seats of the class held since then, ``base_us`` the hours available when a
    licence last added some (the notices' 100 %), ``added_us`` every hour ever added,
    ``notified`` the lowest percentage notified since then (100: none).
    """

    agent_class: str
    as_of: datetime
    left_us: int = 0
    held: int = 0
    base_us: int = 0
    added_us: int = 0
    notified: int = _NONE_NOTIFIED
    exhausted: bool = False

    def left_at(self, at: datetime) -> int:
        """The balance at ``at`` (not before ``as_of``), in seat-microseconds."""
        return self.left_us - self.held * to_us(at - self.as_of) if at > self.as_of else self.left_us

    def used_at(self, at: datetime) -> int:
        """Seat-microseconds used of all the hours ever added, as of ``at``."""
        return self.added_us - self.left_at(at)

    def threshold_us(self, percent: int) -> int:
        return self.base_us * percent // 100


def to_us(delta: timedelta) -> int:
    """A duration in whole microseconds (exact, unlike total_seconds())."""
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def apply_hours_event(balance: Balance, kind: HoursEventKind, at: datetime, *,
                      added_us: int = 0, charge_us: int = 0, percent: int = 0) -> Balance:
    """The balance after one recorded event at record time ``at`` (see the module table)."""
    left = balance.left_at(at)
    as_of = max(at, balance.as_of)
    match kind:
        case HoursEventKind.GRANTED:
            return attrs.evolve(balance, as_of=as_of, left_us=left, held=balance.held + 1)
        case HoursEventKind.RELEASED:
            return attrs.evolve(balance, as_of=as_of, left_us=left, held=max(balance.held - 1, 0))
        case HoursEventKind.CHARGED:
            return attrs.evolve(balance, as_of=as_of, left_us=left - charge_us)
        case HoursEventKind.ADDED:
            return attrs.evolve(balance, as_of=as_of, left_us=left + added_us,
                                base_us=max(left + added_us, 0), added_us=balance.added_us + added_us,
                                notified=_NONE_NOTIFIED, exhausted=False)
        case HoursEventKind.NOTICE:
            return attrs.evolve(balance, as_of=as_of, left_us=left,
                                notified=min(balance.notified, percent))
        case HoursEventKind.EXHAUSTED:
            return attrs.evolve(balance, as_of=as_of, left_us=left, exhausted=True, notified=0)
    raise ValueError(f"not an hours event kind: {kind!r}")


@attrs.frozen
class Due:
    """What is due for a balance: a notice at ``percent`` left, or exhaustion (``percent``
    0), as of ``at``: the instant the balance reached it."""

    percent: int
    at: datetime


def _reached(balance: Balance, target_us: int) -> datetime:
    """When the balance reaches ``target_us`` (at or before: ``as_of``)."""
    over = balance.left_us - target_us
    if over <= 0 or balance.held == 0:
        return balance.as_of
    return balance.as_of + timedelta(microseconds=-(-over // balance.held))


def _pending(balance: Balance) -> list[int]:
    if balance.exhausted or balance.added_us == 0:
        return []
    return [p for p in NOTICE_PERCENTS if p < balance.notified] + [0]


def due(balance: Balance, now: datetime) -> Due | None:
    """What :meth:`Licence.tick` must record by ``now``: exhaustion if the balance is at
    zero, else the most severe notice whose threshold it has reached."""
    left = balance.left_at(now)
    reached = [p for p in _pending(balance) if left <= balance.threshold_us(p)]
    if not reached:
        return None
    percent = min(reached)
    return Due(percent, _reached(balance, balance.threshold_us(percent)))


def next_due(balance: Balance) -> datetime | None:
    """When :func:`due` will next have something, given the seats held now; None while no
    seat burns and nothing is reached."""
    pending = _pending(balance)
    if not pending:
        return None
    target = balance.threshold_us(max(pending))
    if balance.left_us <= target:
        return balance.as_of
    if balance.held == 0:
        return None
    return _reached(balance, target)
