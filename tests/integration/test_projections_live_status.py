"""The live status view always agrees with the ledger's own state.

Random sequences of the commands a master sees (log-ons and log-offs, connections dropping
and coming back, offline journals synced, site revocations, licence amendments, time
passing with its deadlines, cut-offs, re-arming and expiry) are applied to a real ledger on
an SQLite file; after every step the runner catches up and the view — both the copy the
runner holds in memory and the stored tables — must equal the licence aggregate.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import (
    AcquireSeat,
    ConnectSite,
    DisconnectSite,
    HeldSeat,
    LedgerApp,
    Licence,
    ManualClock,
    OfflineEvent,
    ReleaseSeat,
    SyncSite,
    Tick,
)
from ledger.errors import LedgerError
from projections import ProjectionRunner, Status, read_status
from tests.strategies import SITES, master_operations, sampled_users

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
USERS = sampled_users(4)
CLASSES = ("PRED", "PRED", "ACD", "PBX")  # PBX is not licensed: refused

operation = master_operations(USERS, CLASSES)


def ledger_view(lic: Licence) -> dict[str, Any]:
    return {
        "limits": dict(lic.limits), "total_pred_acd": lic.total_pred_acd,
        "expires_at": lic.expires_at, "expired": lic.expired,
        "pools": {n: (p.limit, p.in_use, p.state, p.deadline, p.opened_at, p.closed_at,
                      p.overuse, p.severity, p.enforced) for n, p in lic.pools.items()},
        "sites": {s.name: (s.status, s.since, _by_class(s), dict(s.local_limits))
                  for s in lic.sites.values()},
    }


def _by_class(s: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for seat in s.seats.values():
        counts[seat.agent_class] = counts.get(seat.agent_class, 0) + 1
    return counts


def projected_view(status: Status | None) -> dict[str, Any]:
    assert status is not None
    return {
        "limits": dict(status.limits), "total_pred_acd": status.total_pred_acd,
        "expires_at": status.expires_at, "expired": status.expired,
        "pools": {p.pool: (p.limit, p.in_use, p.state, p.deadline, p.opened_at, p.closed_at,
                           p.overuse, p.severity, p.enforced) for p in status.pools},
        "sites": {s.site: (s.status, s.since, dict(s.seats_by_class), dict(s.local_limits))
                  for s in status.sites},
    }


def apply(app: LedgerApp, clock: ManualClock, op: tuple[Any, ...], seq: dict[str, int]) -> None:
    kind = op[0]
    try:
        if kind == "acquire":
            app.execute([AcquireSeat(op[1], op[2], op[3], "t", "c")])
        elif kind == "release":
            app.execute([ReleaseSeat(op[1], op[2])])
        elif kind == "connect":
            app.execute([ConnectSite(op[1])])
        elif kind == "disconnect":
            app.execute([DisconnectSite(op[1])])
        elif kind == "advance":
            clock.advance(minutes=op[1])
            app.execute([Tick()])
        elif kind == "amend":
            app.amend_licence(limits={"PRED": op[1], "ACD": 1, "VIR": 99}, total_pred_acd=op[2])
        elif kind == "revoke":
            app.revoke_site(op[1])
        elif kind == "enrol":
            app.enrol_site(op[1], local_limits={"PRED": 3})
        elif kind == "sync":
            events = []
            for what, who, agent_class, minutes in op[2]:
                seq[op[1]] += 1
                events.append(OfflineEvent(seq[op[1]], what, who, agent_class,
                                           clock.now() - timedelta(minutes=minutes)))
            held = tuple(HeldSeat(who, agent_class) for who, agent_class in op[3])
            app.execute([SyncSite(op[1], tuple(events), held)])
    except LedgerError:
        pass  # refused without a record (e.g. enrolling a site twice): nothing to project


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(operation, min_size=15, max_size=60),
       total=st.one_of(st.none(), st.integers(min_value=1, max_value=3)))
def test_live_status_always_agrees_with_the_ledger(ops: list[tuple[Any, ...]],
                                                   total: int | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        clock = ManualClock(T0)
        app = LedgerApp(f"sqlite:///{Path(tmp) / 'ledger.db'}", key=os.urandom(32),
                        signing_key=Ed25519PrivateKey.generate(), clock=clock)
        # VIR pads the licence to the 100 seats a master/slave licence needs.
        app.issue_licence(customer="c", limits={"PRED": 2, "ACD": 1, "VIR": 99},
                          total_pred_acd=total)
        app.enrol_site("north", local_limits={"PRED": 3})
        app.enrol_site("south")
        runner = ProjectionRunner(app, batch_size=7)
        seq = dict.fromkeys(SITES, 0)
        try:
            for op in ops:
                apply(app, clock, op, seq)
                runner.run_once()
                expected = ledger_view(app.licence)
                assert projected_view(runner.status()) == expected, op
                with runner.connect() as conn:
                    assert projected_view(read_status(conn)) == expected, op
            for name in sorted({type(e).__name__ for _, e in app.events()}):
                event(f"recorded {name}")
            # and a fresh runner reading only the tables agrees as well
            with ProjectionRunner(app) as fresh:
                assert projected_view(fresh.status()) == ledger_view(app.licence)
        finally:
            runner.close()
            app.close()
