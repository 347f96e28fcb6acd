"""``seatledger demo``: the whole story on a virtual clock, narrated.

A 120-seat licence (PRED=100, ACD=20) shared by two sites. Agents log on and off through
the ledger; the north site's morning shift takes PRED over its limit, which opens the 48-hour
grace window; notices follow at 24 h and 4 h left; the deadline passes with the site still
over, so the limit is enforced and new log-ons are refused; the customer orders more seats
(an amendment), which re-arms grace. Two days of virtual time take a couple of seconds.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ledger import (
    AcquireSeat,
    Grant,
    LedgerApp,
    ManualClock,
    Refusal,
    ReleaseSeat,
    Severity,
    Tick,
)
from ledger.store import create_key_file

from .config import Layout, load_config, render_config
from .keys import create_signing_key
from .pki_setup import create_ca
from .wiring import open_ledger

START = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)


class Narrator:
    def __init__(self, clock: ManualClock, quiet: bool):
        self.clock = clock
        self.quiet = quiet

    def __call__(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.clock.now():%a %d %b %H:%M}] {text}")


def init_data_dir(root: Path, origin: str = "seatledger.demo") -> None:
    """What ``seatledger init`` does, for a fresh directory."""
    layout = Layout(root)
    root.mkdir(parents=True, exist_ok=True)
    layout.config.write_text(render_config(origin, None))
    create_key_file(layout.at_rest_key)
    create_signing_key(layout.signing_key, layout.signing_pub)
    create_ca(layout.ca_dir, origin)


def run_demo(data_dir: str | None, quiet: bool = False) -> int:
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="seatledger-demo-")) if temporary else Path(data_dir)
    if (Layout(root).config).exists():
        print(f"seatledger: {root} already holds a data directory; the demo needs a fresh one")
        return 1
    try:
        return _run(root, quiet)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _run(root: Path, quiet: bool) -> int:
    clock = ManualClock(START)
    say = Narrator(clock, quiet)
    rng = random.Random(7)
    init_data_dir(root)
    say(f"initialised data directory {root}")
    app = open_ledger(load_config(root), clock=clock)
    app.issue_licence(customer="Northwind Contact Centres", limits={"PRED": 100, "ACD": 20})
    say("issued licence: PRED=100, ACD=20 (120 seats), grace 48h, re-arm 30d")
    app.enrol_site("north", local_limits={"PRED": 80})
    app.enrol_site("south")
    say("enrolled sites: north (local PRED limit 80), south (no local limit)")

    def batch(commands: list[Any]) -> list[Any]:
        outcomes = app.execute(commands)
        for outcome in outcomes:
            if isinstance(outcome, list):
                for notice in outcome:
                    say(f"NOTICE severity {notice.severity} ({Severity.NAMES[notice.severity]}): "
                        f"{notice.detail}")
        return outcomes

    def log_on(site: str, users: list[str], cls: str = "PRED") -> tuple[int, int, int]:
        outcomes = batch([AcquireSeat(site, u, cls, tenant="acme", campaign=f"{site}-outbound")
                          for u in users])
        granted = [o for o in outcomes if isinstance(o, Grant)]
        over = sum(1 for o in granted if o.overuse)
        refused = [o for o in outcomes if isinstance(o, Refusal)]
        reasons = ", ".join(sorted({r.reason for r in refused}))
        text = f"{site}: {len(users)} {cls} log-ons -> {len(granted)} granted"
        if over:
            text += f" ({over} over-use)"
        if refused:
            text += f", {len(refused)} refused ({reasons})"
        say(text)
        return len(granted), over, len(refused)

    def log_off(site: str, users: list[str]) -> None:
        batch([ReleaseSeat(site, u) for u in users])
        say(f"{site}: {len(users)} log-offs")

    def advance(hours: float) -> None:
        """Move virtual time, firing deadlines when they fall due (as the master's timer does)."""
        target = clock.now() + timedelta(hours=hours)
        while True:
            due = app.licence.next_due()
            if due is None or due > target:
                break
            clock.set(max(due, clock.now()))
            batch([Tick()])
        clock.set(target)

    north = [f"n{i:03d}" for i in range(90)]
    south = [f"s{i:03d}" for i in range(40)]
    log_on("north", north[:60])
    log_on("south", south[:30])
    log_on("south", [f"acd{i}" for i in range(12)], "ACD")
    lic = app.licence
    say(f"in use: PRED {lic.pools['PRED'].in_use}/100, ACD {lic.pools['ACD'].in_use}/20")
    advance(2)
    log_on("north", north[60:90])  # 80 is north's local limit: 10 refused
    log_on("south", south[30:40])  # takes PRED to 120 > 100: grace opens
    pred = app.licence.pools["PRED"]
    say(f"PRED {pred.in_use}/{pred.limit}: grace window {pred.state}, deadline {pred.deadline:%a %H:%M}")
    advance(6)
    log_off("south", south[:25])
    say(f"PRED back to {app.licence.pools['PRED'].in_use}: over-use ended, window stays open")
    advance(4)
    log_on("south", [f"late{i}" for i in range(30)])
    for _ in range(3):
        advance(12)
        leaving = rng.sample(sorted(app.licence.sites["north"].seats), 5)
        log_off("north", leaving)
        log_on("north", [f"r{rng.randrange(10**6)}" for _ in range(5)])
    advance(14)
    pred = app.licence.pools["PRED"]
    say(f"PRED {pred.in_use}/{pred.limit}: grace {pred.state}, enforced={pred.enforced}")
    log_on("south", ["after1", "after2", "after3"])
    log_off("north", sorted(app.licence.sites["north"].seats)[:30])
    log_on("south", ["after4"])
    app.amend_licence(limits={"PRED": 150, "ACD": 20})
    say("customer ordered 50 more PRED seats: licence amended, grace re-armed")
    log_on("south", [f"new{i}" for i in range(10)])
    lic = app.licence
    say(f"final: PRED {lic.pools['PRED'].in_use}/{lic.pools['PRED'].limit} "
        f"({lic.pools['PRED'].state}), ACD {lic.pools['ACD'].in_use}/20")
    app.close()

    app = open_ledger(load_config(root), clock=clock)
    report = app.verify()
    events = app.max_id()
    rebuilt = app.replay()
    same = rebuilt is not None and rebuilt.pools == app.licence.pools and rebuilt.sites == app.licence.sites
    app.close()
    print(f"audit verify: {'intact' if report.ok else 'FAILED'} - {report.records} records, "
          f"{report.checkpoints} checkpoints; replay from zero matches live state: {same}")
    print(f"{events} events recorded over {(clock.now() - START).total_seconds() / 3600:.0f} "
          "virtual hours")
    return 0 if report.ok and same else 1


__all__ = ["run_demo", "init_data_dir", "LedgerApp"]
