"""What the dashboard and the master's metrics show, gathered once a second.

Pools and sites come from the live-status read model (the tables the master's follower keeps,
as ``seatledger status`` reads them), usage from the usage read model; the licence summary,
the export status and the log's length are read from the master's own ledger while its
writer waits (:meth:`Master.exclusive`, a few microseconds). Every reader (a page poll, a
scrape) gets the last gathered :class:`Telemetry` document: nothing a request does touches
the store.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import trio
from sqlalchemy.exc import SQLAlchemyError

from ledger import LedgerError
from ledger.domain.summaries import licence_summary
from projections import ProjectionError, ProjectionRunner, Status
from projections.tracking import read_positions
from seatledger.master.server import Master
from seatledger.web.feed import RecentFeed
from seatledger.web.metrics import MasterMetrics

log = logging.getLogger("seatledger.web")

REFRESH_SECONDS = 1.0
USAGE_EVERY = 5  # refreshes between usage queries (charts move by the hour)


class Telemetry:
    """The master's observable state. Run :meth:`run` in the master's nursery."""

    def __init__(self, master: Master) -> None:
        self.master = master
        self.feed = RecentFeed(master.now)
        self.runner = ProjectionRunner(master.app)  # queries only: the follower writes
        self.status: Status | None = None
        self.licence: dict[str, Any] | None = None
        self.events = 0
        self.positions: dict[str, int] = {}
        self.last_export_at: datetime | None = None
        self.last_export_day: str | None = None
        self.views_error = ""
        self.usage: dict[str, list[dict[str, Any]]] = {"hours": [], "days": []}
        self.as_of = master.now()
        self.refreshed = trio.Event()
        self._refreshes = 0
        self.metrics = MasterMetrics(self)  # last: its collector reads the above

    def close(self) -> None:
        self.runner.close()

    @property
    def lag(self) -> int | None:
        """Records committed that the read models have not applied yet."""
        if not self.positions:
            return None
        return max(0, self.events - min(self.positions.values()))

    async def run(self) -> None:
        """Gather every :data:`REFRESH_SECONDS` until cancelled."""
        try:
            while True:
                await self.refresh()
                await trio.sleep(REFRESH_SECONDS)
        finally:
            self.close()

    async def refresh(self) -> None:
        now = self.master.now()
        with_usage = self._refreshes % USAGE_EVERY == 0
        self._refreshes += 1
        await trio.to_thread.run_sync(self._read_views, now, with_usage)
        with trio.move_on_after(1.0):  # a writer stuck in a long commit: keep the last
            async with self.master.exclusive():
                self._read_ledger(now)
        self.as_of = now
        self.refreshed.set()
        self.refreshed = trio.Event()

    def _read_views(self, now: datetime, with_usage: bool) -> None:
        try:
            self.status = self.runner.status()
            with self.runner.connect() as conn:
                self.positions = read_positions(conn)
            if with_usage:
                self.usage = self._usage(now)
            self.views_error = ""
        except (SQLAlchemyError, ProjectionError) as e:  # no views yet: the follower starts
            self.views_error = str(e).splitlines()[0]

    def _usage(self, now: datetime) -> dict[str, list[dict[str, Any]]]:
        hour = now.replace(minute=0, second=0, microsecond=0)
        day = hour.replace(hour=0)
        hours = self.runner.usage(hour - timedelta(hours=23), hour + timedelta(hours=1),
                                  by="class", period="hour", as_of=now)
        days = self.runner.usage(day - timedelta(days=29), day + timedelta(days=1),
                                 by="class", period="day", as_of=now)
        return {"hours": _per_period(hours.rows, hour - timedelta(hours=23), timedelta(hours=1), 24),
                "days": _per_period(days.rows, day - timedelta(days=29), timedelta(days=1), 30)}

    def _read_ledger(self, now: datetime) -> None:
        app = self.master.app
        if not app.has_licence:
            return
        try:
            self.events = app.max_id()
        except LedgerError as e:  # the store cannot be read now: keep the last count
            log.warning("dashboard: cannot read the log's length: %s", e)
        lic = app.licence
        self.licence = licence_summary(lic, now)
        if lic.exported_days:
            self.last_export_day = max(lic.exported_days)
            self.last_export_at = lic.export_due_since

    def document(self) -> dict[str, Any]:
        """The dashboard's JSON document."""
        status = self.status
        return {
            "as_of": self.as_of,
            "licence": self.licence,
            "pools": [_pool(p) for p in status.pools] if status else [],
            "sites": [_site(s) for s in status.sites] if status else [],
            "seats_in_use": status.seats_in_use if status else 0,
            "view_as_of": status.last_event_at if status else None,
            "notice": status.notice if status else "",
            "recent": self.feed.entries(),
            "usage": self.usage,
            "export": {"last_day": self.last_export_day, "last_at": self.last_export_at,
                       "overdue": bool(self.licence and self.licence["export"]["overdue"]),
                       "due_since": (self.licence or {}).get("export", {}).get(
                           "last_delivered_or_installed")},
            "master": {"sessions": len(self.master.sessions),
                       "queued": self.master.writer.queued, "lag": self.lag,
                       "views_error": self.views_error},
        }


def _pool(p: Any) -> dict[str, Any]:
    return {"pool": p.pool, "in_use": p.in_use, "limit": p.limit, "state": str(p.state),
            "deadline": p.deadline, "overuse": p.overuse, "enforced": p.enforced}


def _site(s: Any) -> dict[str, Any]:
    return {"site": s.site, "status": str(s.status), "seats": s.seats,
            "seats_by_class": dict(s.seats_by_class), "local_limits": dict(s.local_limits),
            "last_seen": s.last_seen}


def _per_period(rows: Any, start: datetime, step: timedelta, count: int) -> list[dict[str, Any]]:
    """Agent-hours and the highest class peak of each period, oldest first, zeros included."""
    periods = [start + i * step for i in range(count)]
    hours = dict.fromkeys(periods, 0.0)
    peaks = dict.fromkeys(periods, 0)
    for row in rows:
        period = row.period if row.period.tzinfo else row.period.replace(tzinfo=UTC)
        if period in hours:
            hours[period] += row.agent_hours
            peaks[period] = max(peaks[period], row.peak)
    return [{"period": p, "agent_hours": round(hours[p], 3), "peak": peaks[p]} for p in periods]


def instrument(master: Master) -> Telemetry:
    """Telemetry for ``master``, hooked into its writer (batch sizes, commit times) and its
    batches' outcomes (requests, notices, refusals)."""
    telemetry = Telemetry(master)
    master.writer.observer = telemetry.metrics.observe_batch
    feed, metrics = telemetry.feed, telemetry.metrics

    def observe(outcomes: list[Any]) -> None:
        metrics.observe_outcomes(outcomes)
        feed.observe(outcomes)

    master.observe_outcomes = observe
    return telemetry
