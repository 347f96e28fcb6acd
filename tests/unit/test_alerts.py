"""Alerts without I/O: what the master's observations become, the signature, and the
dispatcher's retries, backoff and drops with a fake channel on trio's MockClock."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime

import trio

from ledger import Notice, Severity, SiteState
from seatledger.alerts import (
    Alert,
    Channel,
    DeliveryError,
    Dispatcher,
    child_alert,
    observed_alert,
    sign,
)
from seatledger.master.server import NoticeIssued, SiteStateChanged

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_notices_become_alerts_by_kind() -> None:
    def kind(pool: str, severity: Severity) -> tuple[str, str] | None:
        alert = observed_alert(NoticeIssued(Notice(pool, severity, None, "text")), AT)
        return None if alert is None else (alert.kind, alert.severity)

    assert kind("PRED", Severity.OPENED) == ("overuse", "warning")
    assert kind("PRED", Severity.HOURS_LEFT) == ("overuse", "critical")
    assert kind("ACD", Severity.EXPIRED) == ("enforcement", "critical")
    assert kind("licence", Severity.DAY_LEFT) == ("licence", "warning")
    assert kind("export", Severity.EXPIRED) == ("export", "critical")


def test_a_cut_off_and_the_reconnection_after_it_are_alerted_a_mere_blip_is_not() -> None:
    def alert(state: str, previous: str | None) -> str | None:
        found = observed_alert(SiteStateChanged("north", state, previous), AT)
        return None if found is None else f"{found.kind} {found.site}"

    assert alert(SiteState.CUT_OFF, SiteState.DISCONNECTED) == "site_cut_off north"
    assert alert(SiteState.CONNECTED, SiteState.CUT_OFF) == "site_reconnected north"
    assert alert(SiteState.DISCONNECTED, SiteState.CONNECTED) is None
    assert alert(SiteState.CONNECTED, SiteState.DISCONNECTED) is None
    assert alert(SiteState.NEW, None) is None


def test_a_follower_restarting_or_given_up_is_alerted() -> None:
    restarting = child_alert("read-model follower", "backing_off", 1, 0, AT)
    assert restarting is not None and restarting.severity == "warning"
    gave_up = child_alert("read-model follower", "gave_up", 1, 5, AT)
    assert gave_up is not None and gave_up.severity == "critical"
    assert child_alert("read-model follower", "running", None, 0, AT) is None


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = Alert("overuse", "warning", "x", AT).to_json()
    expected = hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(b"k", "1700000000", body) == f"sha256={expected}"
    assert sign(b"k", "1700000001", body) != sign(b"k", "1700000000", body)


class FlakyChannel(Channel):
    """Fails the first ``failures`` attempts, then delivers."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[float] = []
        self.delivered: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.attempts.append(time.monotonic())  # in the dispatcher's worker thread
        if len(self.attempts) <= self.failures:
            raise DeliveryError("down")
        self.delivered.append(alert)


async def test_backoff_doubles_up_to_its_cap() -> None:
    channel = FlakyChannel(failures=5)
    dispatcher = Dispatcher([channel], retries=5, first_backoff=0.05, max_backoff=0.2)
    dispatcher.submit(Alert("overuse", "warning", "x", AT))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatcher.run)
        # Until the dispatcher has counted the delivery: the channel delivers in a worker
        # thread, and the dispatcher counts it once the thread has returned to it.
        with trio.fail_after(10):
            while dispatcher.statistics()[0].sent == 0:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert len(channel.delivered) == 1
    gaps = [b - a for a, b in zip(channel.attempts, channel.attempts[1:], strict=False)]
    for gap, backoff in zip(gaps, [0.05, 0.1, 0.2, 0.2, 0.2], strict=True):
        assert backoff <= gap < backoff + 0.15, gaps
    [stats] = dispatcher.statistics()
    assert (stats.sent, stats.failed_attempts, stats.dropped) == (1, 5, 0)


async def test_a_full_queue_drops_and_counts_per_channel() -> None:
    slow, quick = FlakyChannel(failures=10**6), FlakyChannel(failures=0)
    dispatcher = Dispatcher([slow, quick], queue_size=2, retries=0)
    for n in range(5):  # no worker runs yet: both queues take two
        dispatcher.submit(Alert("overuse", "warning", str(n), AT))
    assert [s.dropped_full for s in dispatcher.statistics()] == [3, 3]
    assert [s.queued for s in dispatcher.statistics()] == [2, 2]


def test_with_no_channel_submit_does_nothing() -> None:
    dispatcher = Dispatcher([])
    dispatcher.submit(Alert("overuse", "warning", "x", AT))
    assert dispatcher.statistics() == []
