"""Recent notices and refusals, as the master's writer answered them (since it started)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ledger import Notice
from ledger.domain.outcomes import Grant, Refusal

FEED_LENGTH = 50


class RecentFeed:
    """The last :data:`FEED_LENGTH` notices and refusals, newest first."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self._entries: deque[dict[str, Any]] = deque(maxlen=FEED_LENGTH)

    def observe(self, outcomes: list[Any]) -> None:
        """One batch's outcomes (a cheap scan: most are grants without notices)."""
        at: str | None = None
        for outcome in outcomes:
            notices: tuple[Notice, ...] | list[Any] = ()
            if isinstance(outcome, Refusal):
                at = at or self.now().isoformat()
                self._entries.appendleft({"at": at, "kind": "refusal", "site": outcome.site,
                                          "user": outcome.user, "reason": str(outcome.reason),
                                          "detail": outcome.detail})
                continue
            if isinstance(outcome, Grant):
                notices = outcome.notices
            elif isinstance(outcome, list):
                notices = outcome
            for notice in notices:
                if isinstance(notice, Notice):
                    at = at or self.now().isoformat()
                    self._entries.appendleft({
                        "at": at, "kind": "notice", "pool": notice.pool,
                        "severity": _severity(notice.severity), "detail": notice.detail,
                        "deadline": notice.deadline.isoformat() if notice.deadline else None})

    def entries(self) -> list[dict[str, Any]]:
        return list(self._entries)


def _severity(severity: object) -> str:
    name = getattr(severity, "name", None)  # a Severity; a bare int for severity 0
    return name.lower() if isinstance(name, str) else str(severity)
