"""The dispatcher: a bounded queue and a worker per channel, between the master's hot path
and the slow outside world.

:meth:`Dispatcher.submit` never waits (it runs on the master's commit path): it puts the
alert on each channel's queue with ``send_nowait`` and, when a queue is full, drops the
alert for that channel and counts it. Each channel's worker delivers its queue in order in
a worker thread of its own (so a hanging receiver holds one thread, never the writer's),
retrying with exponential backoff; after the last retry the alert is dropped and counted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
import trio

from seatledger.alerts._alert import Alert
from seatledger.alerts.channels import Channel, DeliveryError

log = logging.getLogger("seatledger.alerts")


@attrs.define
class ChannelStatistics:
    """What one channel did: ``dropped_full`` when its queue was full at submit,
    ``dropped_failed`` when every attempt failed."""

    name: str
    sent: int = 0
    failed_attempts: int = 0
    dropped_full: int = 0
    dropped_failed: int = 0
    queued: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_failed

    def as_dict(self) -> dict[str, object]:
        return {"channel": self.name, "sent": self.sent, "failed_attempts": self.failed_attempts,
                "dropped_full": self.dropped_full, "dropped_failed": self.dropped_failed,
                "queued": self.queued}


class _Lane:
    """One channel's queue, worker state and counters."""

    def __init__(self, channel: Channel, queue_size: int) -> None:
        self.channel = channel
        self.send, self.receive = trio.open_memory_channel[Alert](queue_size)
        self.stats = ChannelStatistics(channel.name)
        self.limiter = trio.CapacityLimiter(1)


class Dispatcher:
    """Delivers alerts to ``channels``. Run :meth:`run` in the daemon's nursery; call
    :meth:`submit` from the event loop's thread. With no channel, submit does nothing."""

    def __init__(self, channels: Sequence[Channel], *, queue_size: int = 100,
                 retries: int = 5, first_backoff: float = 1.0, max_backoff: float = 60.0,
                 master: str = "") -> None:
        self.lanes = [_Lane(c, queue_size) for c in channels]
        self.retries = retries
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.master = master

    @property
    def active(self) -> bool:
        """Whether any channel is configured (else nothing is ever sent)."""
        return bool(self.lanes)

    def submit(self, alert: Alert) -> None:
        """Queue ``alert`` on every channel without waiting; a full queue drops it there."""
        if self.master and not alert.master:
            alert = attrs.evolve(alert, master=self.master)
        for lane in self.lanes:
            try:
                lane.send.send_nowait(alert)
            except trio.WouldBlock:
                lane.stats.dropped_full += 1
                if lane.stats.dropped_full == 1 or lane.stats.dropped_full % 100 == 0:
                    log.warning("alert queue for %s full: dropped %d alert(s) so far",
                                lane.channel.name, lane.stats.dropped_full,
                                extra={"channel": lane.channel.name, "kind": alert.kind})

    def statistics(self) -> list[ChannelStatistics]:
        for lane in self.lanes:
            lane.stats.queued = lane.receive.statistics().current_buffer_used
        return [lane.stats for lane in self.lanes]

    async def run(self) -> None:
        """Deliver until cancelled; then log what each channel did."""
        try:
            async with trio.open_nursery() as nursery:
                for lane in self.lanes:
                    nursery.start_soon(self._work, lane)
        finally:
            for stats in self.statistics():
                log.info("alerts via %s: %d sent, %d dropped", stats.name, stats.sent,
                         stats.dropped, extra=stats.as_dict())

    async def _work(self, lane: _Lane) -> None:
        async for alert in lane.receive:
            await self._deliver(lane, alert)

    async def _deliver(self, lane: _Lane, alert: Alert) -> None:
        delay = self.first_backoff
        for attempt in range(self.retries + 1):
            try:
                # Abandoned on cancel: a hanging server must not hold up the daemon's stop
                # (the channel's own timeout ends the thread).
                await trio.to_thread.run_sync(lane.channel.send, alert, limiter=lane.limiter,
                                              abandon_on_cancel=True)
            except DeliveryError as e:
                lane.stats.failed_attempts += 1
                if attempt == self.retries:
                    lane.stats.dropped_failed += 1
                    log.error("alert dropped after %d attempts: %s", attempt + 1, e,
                              extra={"channel": lane.channel.name, "kind": alert.kind})
                    return
                log.warning("alert delivery failed (retrying in %.0f s): %s", delay, e,
                            extra={"channel": lane.channel.name, "kind": alert.kind})
                await trio.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            lane.stats.sent += 1
            return


__all__ = ["ChannelStatistics", "Dispatcher"]
