"""Translation between wire messages and ledger commands and outcomes: one function per
boundary crossing, so that each wire type meets its ledger type in one place."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from ledger import Failure, Grant, HeldSeat, Notice, OfflineEvent, Refusal, Severity
from ledger.domain.notices import clock_stepped_text, notice_kind
from seatledger.master.writer import StoreUnavailable
from transport import Granted, Message, Refused, Released
from transport import HeldSeat as WireHeldSeat
from transport import Notice as NoticeMessage
from transport import OfflineEvent as WireOfflineEvent

Send = Callable[[Message], object]
STORE_UNAVAILABLE = "store_unavailable"
"""The reason code of a request refused because the store cannot be written."""
SeverityWord = Literal["info", "warning", "urgent", "critical"]

SEVERITY_WORDS: dict[Severity, SeverityWord] = {
    Severity.OPENED: "info", Severity.DAY_LEFT: "warning",
    Severity.HOURS_LEFT: "urgent", Severity.EXPIRED: "critical",
}


def epoch(dt: datetime | None) -> float | None:
    return None if dt is None else dt.timestamp()


def offline_event(e: WireOfflineEvent) -> OfflineEvent:
    return OfflineEvent(e.seq, e.kind, e.user, e.agent_class,
                        datetime.fromtimestamp(e.occurred_at, UTC), e.tenant, e.campaign,
                        e.reason)


def held_seat(h: WireHeldSeat) -> HeldSeat:
    return HeldSeat(h.user, h.agent_class, h.tenant, h.campaign)


def notice_message(notice: Notice) -> NoticeMessage:
    return NoticeMessage(
        kind=notice_kind(notice),
        agent_class=notice.pool, severity=SEVERITY_WORDS[notice.severity],
        deadline=epoch(notice.deadline), text=notice.detail)


def answer_acquire(send: Send, request_id: int) -> Callable[[Any], None]:
    """The reply to an Acquire, from the ledger's outcome."""
    def reply(outcome: Any) -> None:
        if isinstance(outcome, Grant):
            send(Granted(request_id, str(outcome.seat),
                                 "overuse" if outcome.overuse else "normal",
                                 epoch(outcome.deadline) if outcome.overuse else None))
        elif isinstance(outcome, Refusal):
            send(Refused(request_id, outcome.reason, outcome.detail[:4000]))
        elif isinstance(outcome, StoreUnavailable):
            send(Refused(request_id, STORE_UNAVAILABLE, outcome.error[:4000]))
        else:
            send(Refused(request_id, "failed", getattr(outcome, "error", "")[:4000]))
    return reply


def answer_release(send: Send, request_id: int, user: str) -> Callable[[Any], None]:
    """The reply to a Release, from the ledger's outcome."""
    def reply(outcome: Any) -> None:
        if isinstance(outcome, StoreUnavailable):  # not recorded: the seat is still held
            send(Released(request_id, user, False, STORE_UNAVAILABLE))
        elif isinstance(outcome, Failure):
            send(Released(request_id, user, False, "unknown_seat"))
        else:
            send(Released(request_id, user))
    return reply


ALL_POOLS = "*"  # a notice about the licence as a whole, not one pool


def clock_notice(wall: datetime, expected: datetime) -> NoticeMessage:
    """A critical notice for every site: the master's wall clock was stepped."""
    return NoticeMessage(kind="clock_stepped", agent_class=ALL_POOLS, severity="critical",
                         text=clock_stepped_text(wall, expected))
