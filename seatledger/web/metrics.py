"""Prometheus metrics of the master and the slave (``prometheus_client``).

The hot path only increments pre-bound counter children and observes two histograms (the
writer's batch size and commit time); everything else is read at scrape time from the last
gathered :class:`~seatledger.web.telemetry.Telemetry` by a collector.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ledger.domain.outcomes import Grant, Refusal, Release
from ledger.domain.pools import PoolState
from ledger.domain.values import SiteState
from seatledger.master.writer import StoreUnavailable
from seatledger.slave.connector import SlaveConnector
from seatledger.slave.policy import SlaveState

if TYPE_CHECKING:
    from seatledger.web.telemetry import Telemetry

BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class MasterMetrics:
    """The master's registry. ``observe_batch`` and ``observe_outcomes`` are the writer's and
    the master's hooks."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("seatledger_requests", "Requests answered, by outcome and reason",
                                ["outcome", "reason"], registry=self.registry)
        self.batch_size = Histogram("seatledger_batch_size", "Requests per committed batch",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.commit_seconds = Histogram("seatledger_commit_seconds",
                                        "Seconds a batch took to commit",
                                        buckets=COMMIT_BUCKETS, registry=self.registry)
        self._granted = self.requests.labels("granted", "")
        self._overuse = self.requests.labels("granted", "overuse")
        self._repeated = self.requests.labels("granted", "repeated")
        self._released = self.requests.labels("released", "")
        self._unavailable = self.requests.labels("refused", "store_unavailable")
        self._refused: dict[str, Any] = {}
        self.registry.register(_MasterCollector(telemetry))

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.commit_seconds.observe(seconds)

    def observe_outcomes(self, outcomes: list[Any]) -> None:
        for outcome in outcomes:
            if isinstance(outcome, Grant):
                (self._repeated if outcome.repeated
                 else self._overuse if outcome.overuse else self._granted).inc()
            elif isinstance(outcome, Refusal):
                reason = str(outcome.reason)
                child = self._refused.get(reason)
                if child is None:
                    child = self._refused[reason] = self.requests.labels("refused", reason)
                child.inc()
            elif isinstance(outcome, Release):
                self._released.inc()
            elif isinstance(outcome, StoreUnavailable):
                self._unavailable.inc()


class _MasterCollector(Collector):
    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def collect(self) -> Iterator[GaugeMetricFamily]:
        t = self.telemetry
        in_use = GaugeMetricFamily("seatledger_pool_seats_in_use", "Seats in use per pool",
                                   labels=["pool"])
        limit = GaugeMetricFamily("seatledger_pool_limit", "Licensed seats per pool",
                                  labels=["pool"])
        grace = GaugeMetricFamily("seatledger_pool_grace_state",
                                  "1 for the pool's grace state", labels=["pool", "state"])
        left = GaugeMetricFamily("seatledger_pool_deadline_seconds",
                                 "Seconds to the grace deadline of a pool with an open window",
                                 labels=["pool"])
        sites = GaugeMetricFamily("seatledger_sites", "Enrolled sites by status",
                                  labels=["status"])
        status = t.status
        if status is not None:
            for p in status.pools:
                in_use.add_metric([p.pool], p.in_use)
                limit.add_metric([p.pool], p.limit)
                for state in PoolState:
                    grace.add_metric([p.pool, str(state)], float(p.state == state))
                if p.deadline is not None and p.state == PoolState.OPEN:
                    left.add_metric([p.pool], max(0.0, (p.deadline - t.as_of).total_seconds()))
            counts = {str(s): 0 for s in SiteState}
            for site in status.sites:
                counts[str(site.status)] += 1
            for name, n in counts.items():
                sites.add_metric([name], n)
        yield from (in_use, limit, grace, left, sites)
        yield GaugeMetricFamily("seatledger_queue_depth", "Requests waiting for the writer",
                                value=t.master.writer.queued)
        yield GaugeMetricFamily("seatledger_sessions", "Sites connected to this master",
                                value=len(t.master.sessions))
        export = GaugeMetricFamily("seatledger_last_export_timestamp_seconds",
                                   "When the last audit export was delivered (Unix time)")
        if t.last_export_at is not None:
            export.add_metric([], t.last_export_at.timestamp())
        yield export
        lag = GaugeMetricFamily("seatledger_read_model_lag_records",
                                "Committed records the read models have not applied yet")
        if t.lag is not None:
            lag.add_metric([], t.lag)
        yield lag


def slave_registry(slave: SlaveConnector) -> CollectorRegistry:
    """A registry of one slave connector: seats held by class, its state, journal backlog."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_SlaveCollector(slave))
    return registry


class _SlaveCollector(Collector):
    def __init__(self, slave: SlaveConnector) -> None:
        self.slave = slave

    def collect(self) -> Iterator[GaugeMetricFamily]:
        held = GaugeMetricFamily("seatledger_slave_seats_held", "Seats this site holds",
                                 labels=["agent_class"])
        counts: dict[str, int] = {}
        for seat in self.slave.seats().values():
            counts[seat.agent_class] = counts.get(seat.agent_class, 0) + 1
        for cls, n in sorted(counts.items()):
            held.add_metric([cls], n)
        yield held
        state = GaugeMetricFamily("seatledger_slave_state", "1 for the connector's state",
                                  labels=["state"])
        for s in SlaveState:
            state.add_metric([str(s)], float(self.slave.state == s))
        yield state
        yield GaugeMetricFamily("seatledger_slave_journal_backlog",
                                "Journalled events not yet delivered to the master",
                                value=self.slave.journal.count())
