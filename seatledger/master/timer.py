"""The master's deadline timer: a Tick when the licence's next deadline (grace, notices,
cut-off, expiry) falls due, even when no request arrives, and at least every refresh
interval, so that changes an operator made from the command line are picked up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import trio

from ledger import LedgerApp, Tick

Submit = Callable[[Any], Awaitable[Any]]


class DeadlineTimer:
    """Run :meth:`run` in a nursery; call :meth:`reschedule` after every committed batch."""

    def __init__(self, app: LedgerApp, submit: Submit, *, refresh_interval: float) -> None:
        self.app = app
        self.submit = submit
        self.refresh_interval = refresh_interval
        # (A master with a writer process has no licence until its writer has loaded it.)
        self._next_due: datetime | None = app.licence.next_due() if app.has_licence else None
        self._changed = trio.Event()

    @property
    def next_due(self) -> datetime | None:
        return self._next_due

    def reschedule(self) -> None:
        """Re-read the next deadline; wake the timer if it moved."""
        if not self.app.has_licence:  # the store could not be read back: keep the last one
            return
        due = self.app.licence.next_due()
        if due != self._next_due:
            self._next_due = due
            self._changed.set()

    async def run(self) -> None:
        refresh = self.refresh_interval
        while True:
            self._changed = trio.Event()
            due = self._next_due
            delay = refresh if due is None else (due - self.app.now()).total_seconds()
            if delay > 0:
                with trio.move_on_after(min(delay, refresh)) as idle:
                    await self._changed.wait()
                if not idle.cancelled_caught:
                    continue  # the schedule moved: recompute
            await self.submit(Tick())
            if due is not None and self._next_due == due and delay <= 0:
                await trio.sleep(1)  # nothing moved it: do not spin on the same instant


__all__ = ["DeadlineTimer"]
