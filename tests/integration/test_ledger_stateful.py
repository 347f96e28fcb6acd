"""Random grant / release / advance-time / amend sequences against a tiny reference model.

The system under test is the real ledger on an SQLite file; the model is a few lines of
the grace policy as DESIGN.md states it. Checked after every step: counts, grace states and
deadlines agree; an over-limit grant happens only inside an open window and never once grace
is spent; every state change was recorded as an event. At the end, replaying the stored log
and reopening the store (from its snapshot) both rebuild identical state.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from ledger import (
    AcquireSeat,
    ConnectSite,
    DisconnectSite,
    Failure,
    Grant,
    LedgerApp,
    ManualClock,
    Refusal,
    ReleaseSeat,
    Tick,
)
from tests.strategies import SITES, advance_hours, limit_deltas, sampled_users, site_names

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
GRACE = timedelta(hours=48)
REARM = timedelta(days=30)
USERS = sampled_users(6)
CLASSES = ("PRED", "ACD")


class Model:
    """The grace policy in its simplest form, for one class at a time."""

    def __init__(self, limits: dict[str, int]):
        self.limits = dict(limits)
        self.held: dict[tuple[str, str], str] = {}
        self.state = {c: "available" for c in limits}
        self.deadline: dict[str, datetime | None] = {c: None for c in limits}
        self.closed: dict[str, datetime | None] = {c: None for c in limits}

    def in_use(self, cls: str) -> int:
        return sum(1 for c in self.held.values() if c == cls)

    def grant(self, now: datetime, site: str, user: str, cls: str) -> str:
        if (site, user) in self.held:
            return "repeat"
        if self.in_use(cls) + 1 > self.limits[cls]:
            if self.state[cls] == "spent":
                return "refused"
            if self.state[cls] == "available":
                self.state[cls] = "open"
                self.deadline[cls] = now + GRACE
            self.held[(site, user)] = cls
            return "overuse"
        self.held[(site, user)] = cls
        return "normal"

    def release(self, site: str, user: str) -> bool:
        return self.held.pop((site, user), None) is not None

    def next_due(self) -> datetime | None:
        times = [d for c, d in self.deadline.items() if self.state[c] == "open" and d]
        times += [t + REARM for c, t in self.closed.items() if self.state[c] == "spent" and t]
        return min(times) if times else None

    def fire(self, now: datetime) -> None:
        for c in self.limits:
            deadline = self.deadline[c]
            if self.state[c] == "open" and deadline and now >= deadline:
                self.state[c], self.closed[c], self.deadline[c] = "spent", deadline, None
            closed = self.closed[c]
            if self.state[c] == "spent" and closed and now >= closed + REARM:
                self.state[c], self.closed[c] = "available", None

    def amend(self, limits: dict[str, int]) -> None:
        # Rule 4: new terms re-arm a pool only when they raise its limit.
        for c in limits:
            if self.state[c] != "available" and limits[c] > self.limits[c]:
                self.state[c], self.deadline[c], self.closed[c] = "available", None, None
        self.limits = dict(limits)


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        # One directory per example, removed in teardown (which Hypothesis runs even when a
        # step fails).
        self._tmp = tempfile.TemporaryDirectory(prefix="seatledger-stateful-")
        self.dir = Path(self._tmp.name)
        self._opened: list[LedgerApp] = []
        self.clock = ManualClock(T0)
        self.keys = {"key": os.urandom(32), "signing_key": Ed25519PrivateKey.generate()}
        self.app = self._open()
        limits = {"PRED": 97, "ACD": 3}
        self.app.issue_licence(customer="Acme", limits=limits)
        for site in SITES + ("bulk",):
            self.app.enrol_site(site)
        self.model = Model(limits)
        # 95 PRED seats held elsewhere, so that the small user set can cross the limit.
        self.app.execute([AcquireSeat("bulk", f"b{i}", "PRED") for i in range(95)])
        for i in range(95):
            self.model.grant(T0, "bulk", f"b{i}", "PRED")

    def _open(self) -> LedgerApp:
        app = LedgerApp(f"sqlite:///{self.dir}/ledger.db", clock=self.clock,
                        snapshot_every=50, checkpoint_every=40, **self.keys)
        self._opened.append(app)
        return app

    def _run(self, command: object) -> tuple[object, list[str]]:
        before = self.app.max_id()
        outcome = self.app.execute([command])[0]  # type: ignore[list-item]
        # A signed checkpoint may follow any command (every checkpoint_every records): it is
        # the seal's, not the command's.
        recorded = [type(e).__name__ for _, e in self.app.events(before + 1)
                    if type(e).__name__ != "AuditCheckpointSigned"]
        return outcome, recorded

    @rule(site=site_names, user=st.sampled_from(USERS), cls=st.sampled_from(CLASSES))
    def grant(self, site: str, user: str, cls: str) -> None:
        state_before = self.model.state[cls]
        expected = self.model.grant(self.clock.now(), site, user, cls)
        outcome, recorded = self._run(AcquireSeat(site, user, cls))
        if expected == "refused":
            assert isinstance(outcome, Refusal) and outcome.reason == "limit_enforced"
            assert recorded == ["SeatRefused"]
        elif expected == "repeat":
            assert isinstance(outcome, Grant) and outcome.repeated
            assert recorded == []
        else:
            assert isinstance(outcome, Grant) and not outcome.repeated
            assert outcome.overuse == (expected == "overuse")
            assert recorded[-1] == "SeatGranted"
            if outcome.overuse:
                assert state_before != "spent"
                assert self.app.licence.pools[cls].state == "open"
                if state_before == "available":
                    assert recorded[:2] == ["OveruseStarted", "AbuseNoticeIssued"]

    @rule(site=site_names, user=st.sampled_from(USERS))
    def release(self, site: str, user: str) -> None:
        held = self.model.release(site, user)
        outcome, recorded = self._run(ReleaseSeat(site, user))
        if held:
            assert recorded[0] == "SeatReleased"
        else:
            assert isinstance(outcome, Failure) and recorded == []

    @rule(site=site_names)
    def drop_connection(self, site: str) -> None:
        # The site's connection drops; if time passes its cut-off, the master records
        # SiteCutOff and keeps its seats counted (the model's seats are untouched).
        self._run(ConnectSite(site))
        _, recorded = self._run(DisconnectSite(site))
        assert recorded == ["SiteDisconnected"]

    @rule(hours=advance_hours)
    def advance(self, hours: int) -> None:
        target = self.clock.now() + timedelta(hours=hours)
        while (due := self.app.licence.next_due()) is not None and due <= target:
            self.clock.set(max(due, self.clock.now()))
            _, recorded = self._run(Tick())
            assert "SeatReleased" not in recorded  # neither enforcement nor cut-off revokes
        while (due := self.model.next_due()) is not None and due <= target:
            self.model.fire(due)
        self.clock.set(target)

    @rule(delta=limit_deltas)
    def amend(self, delta: int) -> None:
        limits = {"PRED": 97 + (1 if delta > 0 else 0), "ACD": max(3 + delta, 3)}
        self.app.amend_licence(limits=limits)
        self.model.amend(limits)

    @invariant()
    def agrees_with_model(self) -> None:
        lic = self.app.licence
        for cls in CLASSES:
            pool = lic.pools[cls]
            assert pool.in_use == self.model.in_use(cls)
            assert pool.state == self.model.state[cls], cls
            if pool.state == "open":
                assert pool.deadline == self.model.deadline[cls]

    def teardown(self) -> None:
        if not hasattr(self, "_tmp"):
            return
        try:
            if hasattr(self, "app"):
                self._check_replay_and_reopen()
        finally:
            for app in self._opened:
                app._app.close()  # a no-op for a store already closed
            self._tmp.cleanup()

    def _check_replay_and_reopen(self) -> None:
        live = self.app.licence
        rebuilt = self.app.replay()
        assert rebuilt is not None
        assert rebuilt.pools == live.pools and rebuilt.sites == live.sites
        self.app.close()
        reopened = self._open()
        assert reopened.licence.pools == live.pools and reopened.licence.sites == live.sites
        assert reopened.licence.policy == live.policy and reopened.licence.limits == live.limits
        assert reopened.verify().ok
        reopened.close()


LedgerMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("SEATLEDGER_STATEFUL_EXAMPLES", "40")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_ledger_against_reference_model = LedgerMachine.TestCase
