"""``seatledger demo``: the whole system end to end, on a virtual clock, narrated.

A master and three slave connectors talk over real mutual-TLS sockets on 127.0.0.1 while
trio's MockClock runs three virtual days in seconds. The demo plays the vendor too: it keeps
a vendor's home (licence-signing key, age identity, registry), the master pins the vendor's
key, sends its licence request, and installs the 120-seat licence (PRED=100, ACD=20) the
vendor signs for it; an edited copy and a self-made licence are refused. The licence is
shared by north, south and east. The morning shift takes PRED over the limit, which
opens the 48-hour grace window; every site gets the notices. East's WAN link fails: it
keeps working offline within its local limit, is cut off after three failed attempts five
minutes apart (the master keeps counting its seats, as its count stays as it was while a
site is silent), runs on the 5-agent demo limit, then reconnects and syncs its journal,
which the master records once, reconciling the seats east no longer holds. The grace deadline
passes with PRED still over: new log-ons are refused. The customer orders more seats: the
vendor issues a new licence, installed while the sites are busy, and PRED's grace re-arms. Finally: the seal verifies, the status and usage tables are printed, and
each day is exported (encrypted to the vendor and signed) to the inbox the licence directs,
imported on the vendor's side, and the vendor's usage report is compared with the master's.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import trio
import trio.testing

from ledger import LedgerApp, LicenceError, ManualClock
from seatledger.bootstrap import build_master, build_slave, master_settings
from seatledger.config.bundle import Bundle
from seatledger.config.keys import export_public_key_text
from seatledger.config.settings import Config, Layout
from seatledger.config.store import open_ledger
from seatledger.demo.chain import three_tiers
from seatledger.demo.relay import Relay
from seatledger.master.server import trio_now
from seatledger.services.datadir import init_data_dir
from seatledger.services.export import import_exports, run_exports
from seatledger.services.operator import DirectPort, install_licence, licence_request
from seatledger.services.reports import closing_reports, compare_usage
from seatledger.services.sites import enrol_site
from seatledger.slave.connector import SeatRefusedError, SlaveSettings
from seatledger.vendor.analytics import AnalyticsRunner
from seatledger.vendor.findings import Findings, Severity
from seatledger.vendor.home import VendorConfig, init_vendor_home, load_vendor_config
from seatledger.vendor.imports import VendorImport
from seatledger.vendor.licensing import issue_licence
from seatledger.vendor.records import VendorRecords
from seatledger.vendor.registry import VendorStore
from seatledger.vendor.reports import billing_report

START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)
CUSTOMER = "Northwind Contact Centres"


def run_demo(data_dir: str | None, quiet: bool = False) -> int:
    temporary = data_dir is None
    root = Path(data_dir or tempfile.mkdtemp(prefix="seatledger-demo-"))
    if Layout(root / "master").config.exists():
        print(f"seatledger: {root} already holds a demo; the demo needs a fresh directory")
        return 1
    if (root / "vendor").exists():
        print(f"seatledger: {root} already holds a vendor's home; the demo needs a fresh "
              "directory")
        return 1
    try:
        code = trio.run(_demo, root, quiet,
                        clock=trio.testing.MockClock(autojump_threshold=0.002))
        if not temporary:
            _where_to_look(root)
        return code
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)


def _where_to_look(root: Path) -> None:
    """The directories the demo leaves, and one command to try in each."""
    inbox = root / "vendor" / "inbox"
    first = next(iter(sorted(inbox.glob("*.jsonl.gz.age"))), None)
    print(f"\nthe master's data directory: {root / 'master'}\n"
          f"  try: seatledger status --data-dir {root / 'master'}\n"
          f"the vendor's home (licence key, age identity, registry): {root / 'vendor'}\n"
          f"  try: seatledger vendor report watchlist --vendor-dir {root / 'vendor'}")
    if first is not None:
        print(f"  decrypt an export with age: age -d -i {root / 'vendor/keys/age-identity.txt'} "
              f"{first} | gunzip | head -3")


async def _demo(root: Path, quiet: bool) -> int:
    now = trio_now(START)

    def say(text: str) -> None:
        if not quiet:
            print(f"[{now():%a %d %b %H:%M}] {text}", flush=True)

    vendor = init_vendor_home(root / "vendor", name="Demo Vendor")
    with VendorStore.open(vendor) as store:
        store.add_customer(CUSTOMER)
    say(f"vendor: home created in {vendor.root} (licence key, age identity, registry); "
        f"customer {CUSTOMER!r} added")
    master_dir = root / "master"
    config = init_data_dir(master_dir, origin="seatledger.demo", history=False,
                           vendor_key=vendor.layout.licence_pub)
    clock = ManualClock(START)
    app = open_ledger(config, clock=clock)
    app.start_trial()
    say("master initialised with the vendor's key pinned; no licence yet: trial mode "
        "(5 seats, 4 campaigns, no over-use grace)")
    operator = DirectPort(app)
    licence = _vendor_issues(vendor, config, root, {"PRED": 100, "ACD": 20}, START)
    installed = install_licence(operator, config, licence)["licence"]
    say(f"vendor signed licence {installed['licence_id']} (serial {installed['serial']}) for "
        "this master: PRED=100, ACD=20 (120 seats), grace 48h, re-arm 30d; installed")
    _refusals(say, operator, config, root, licence)
    bundles: dict[str, Bundle] = {}
    for name, limits in (("north", {"PRED": 70, "ACD": 10}), ("south", {"PRED": 60}),
                         ("east", {"PRED": 30})):
        path = enrol_site(config, app, name, local_limits=limits, master="127.0.0.1:1",
                          output=root / "bundles" / f"{name}.bundle")
        bundles[name] = Bundle.read(path)
    say("sites enrolled, each with a certificate from the master's CA and a local limit: "
        "north PRED 70, south PRED 60, east PRED 30")

    master = build_master(config, app=app, now=now,
                          # Long heartbeats: each one costs real time on the virtual clock.
                          settings=master_settings(config, worker_thread=False,
                                                   heartbeat_interval=1800,
                                                   refresh_interval=3600))
    settings = SlaveSettings()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(master.run, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        relay = Relay(port)
        await nursery.start(relay.run)
        say(f"master listening on 127.0.0.1:{port} (TLS 1.3, client certificates required)")

        def bundle_for(name: str) -> Bundle:
            b = bundles[name]
            target = relay.port if name == "east" else port
            return Bundle(b.site, b.ca_pem, b.cert_pem, b.key_pem, f"127.0.0.1:{target}")

        async with build_slave(bundle_for("north"), root / "north", settings=settings,
                                  now=now) as north, \
                build_slave(bundle_for("south"), root / "south", settings=settings,
                               now=now) as south, \
                build_slave(bundle_for("east"), root / "east", settings=settings,
                               now=now) as east:
            slaves = {"north": north, "south": south, "east": east}
            for s in slaves.values():
                await s.wait_online()
            say("north, south and east connected and synced")
            seen = {name: 0 for name in slaves}

            def alerts() -> None:
                for name, s in slaves.items():
                    for alert in s.alerts[seen[name]:]:
                        if not quiet:
                            print(f"[{alert.at:%a %d %b %H:%M}]   {name} alert "
                                  f"({alert.severity}): {alert.text}")
                    seen[name] = len(s.alerts)

            async def log_on(site: str, users: list[str], cls: str = "PRED") -> None:
                slave = slaves[site]
                statuses: dict[str, int] = {}
                refused: dict[str, int] = {}
                for user in users:
                    try:
                        seat = await slave.acquire(user, cls, tenant="northwind",
                                                   campaign=f"{site}-{cls.lower()}")
                        statuses[seat.status] = statuses.get(seat.status, 0) + 1
                    except SeatRefusedError as e:
                        refused[e.reason] = refused.get(e.reason, 0) + 1
                parts = [f"{n} {s}" for s, n in statuses.items()]
                parts += [f"{n} refused ({r})" for r, n in refused.items()]
                say(f"{site}: {len(users)} {cls} log-ons -> {', '.join(parts)}")
                alerts()

            async def log_off(site: str, count: int) -> None:
                users = sorted(slaves[site].seats())[:count]
                for user in users:
                    await slaves[site].release(user)
                say(f"{site}: {len(users)} log-offs")

            async def wait(hours: float) -> None:
                await trio.sleep(hours * 3600)
                alerts()

            def pools() -> str:
                p = app.licence.pools
                return (f"PRED {p['PRED'].in_use}/{p['PRED'].limit} ({p['PRED'].state}), "
                        f"ACD {p['ACD'].in_use}/{p['ACD'].limit}")

            await log_on("north", [f"n{i:02d}" for i in range(45)])
            await log_on("south", [f"s{i:02d}" for i in range(35)])
            await log_on("north", [f"na{i}" for i in range(8)], "ACD")
            say(f"ledger: {pools()}")
            await wait(2)
            await log_on("east", [f"e{i:02d}" for i in range(25)])
            say(f"ledger: {pools()}; grace deadline "
                f"{app.licence.pools['PRED'].deadline:%a %H:%M}")

            await wait(1)
            relay.cut()
            say("east's WAN link fails")
            await trio.sleep(60)
            await log_on("east", [f"eo{i}" for i in range(8)])
            await log_off("east", 3)
            await wait(0.3)
            say(f"east: {east.state} after {east.failed_rounds} failed rounds; "
                f"master sees east {app.licence.sites['east'].status}, its "
                f"{len(app.licence.sites['east'].seats)} seats still counted; {pools()}")
            await log_on("east", [f"ed{i}" for i in range(7)])
            relay.restore()
            say("east's link is back; east retries every 15 minutes while cut off")
            await wait(0.5)
            say(f"east: {east.state}; synced (applied, already known, reconciled) = "
                f"{east.synced[-1]}; {pools()}")

            await wait(4)
            await log_on("north", [f"nb{i:02d}" for i in range(25)])
            say(f"ledger: {pools()} - over the limit again, inside the same window")
            await wait(30)
            await log_off("south", 5)
            await wait(13)
            say(f"ledger: {pools()}, enforced={app.licence.pools['PRED'].enforced}")
            await log_on("south", ["after1", "after2", "after3"])
            await log_off("north", 25)
            await log_on("south", ["after4"])
            more = _vendor_issues(vendor, config, root, {"PRED": 150, "ACD": 20}, now())
            async with master.exclusive():
                serial = install_licence(operator, config, more)["licence"]["serial"]
            say(f"customer ordered 50 more PRED seats: the vendor signed serial {serial} "
                "(PRED=150), installed while the sites are busy; PRED's grace re-armed as "
                "the new licence raises its limit")
            await log_on("south", [f"new{i}" for i in range(10)])
            say(f"ledger: {pools()}")
            await wait(10)
        master.stop()
        await master.stopped.wait()
        nursery.cancel_scope.cancel()
    end = now()
    app.close()
    chained = await three_tiers(root / "chain", vendor, _vendor_issues, now, say)
    return await trio.to_thread.run_sync(_finish, root, config, end, quiet) | (not chained)


def _finish(root: Path, config: Config, end: datetime, quiet: bool) -> int:
    app = open_ledger(config, read_only=True)
    report = app.verify()
    print(f"audit verify: {'intact' if report.ok else 'FAILED'} - {report.records} records, "
          f"{report.checkpoints} checkpoints")
    ok = report.ok
    ok &= _reports(app, root, end, quiet)
    ok &= _vendor(app, config, root, end, quiet)
    return 0 if ok else 1


def _vendor_issues(vendor: VendorConfig, config: Config, root: Path,
                   limits: dict[str, int], at: datetime, customer: str = CUSTOMER) -> Path:
    """The vendor signs a licence for the master's request; the file the customer receives."""
    with VendorStore.open(vendor) as store:
        if not store.has_customer(customer):
            store.add_customer(customer)
        signed = issue_licence(vendor, store, customer=customer,
                               request=licence_request(config), limits=limits, now=at)
    path = root / "licences" / f"{signed.terms.licence_id}.licence"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(signed.text, encoding="utf-8")
    return path


def _refusals(say: Callable[[str], None], port: DirectPort, config: Config, root: Path,
              licence: Path) -> None:
    """An edited copy of the licence and a self-made one are refused (and recorded)."""
    edited = root / "licences" / "edited.licence"
    edited.write_text(licence.read_text().replace("PRED = 100", "PRED = 900"))
    self_made = init_vendor_home(root / "self-made-vendor", name="The customer itself")
    with VendorStore.open(self_made) as store:
        store.add_customer(CUSTOMER)
    forged = _vendor_issues(self_made, config, root / "self-made-vendor",
                            {"PRED": 900, "ACD": 20}, START)
    for what, path in (("an edited copy (PRED = 900)", edited),
                       ("a self-made licence", forged)):
        try:
            install_licence(port, config, path)
        except LicenceError as e:
            say(f"install of {what} refused: {e}")


def _reports(app: LedgerApp, root: Path, end: datetime, quiet: bool) -> bool:
    """Status and usage tables, and the HTML report, from the read models."""
    reports = closing_reports(app, root, START, end)
    if not quiet:
        print(reports.status_text, reports.by_pool_text, reports.by_site_text, sep="\n\n")
    print(f"usage report (HTML, open it in a browser): {reports.html}")
    return reports.has_usage


def _vendor(app: LedgerApp, config: Config, root: Path, end: datetime, quiet: bool) -> bool:
    """Export each day to a folder, import as the vendor, compare usage."""
    vendor = load_vendor_config(root / "vendor")
    through: date = end.date()  # the master exports it the next day (its clock, below)
    folder = vendor.layout.inbox
    master_app = open_ledger(config, clock=ManualClock(end + timedelta(days=1)))
    try:  # to where the licence directs: the vendor's inbox, to the vendor's age key
        results = run_exports(master_app, config, [through])
    finally:
        master_app.close()
    print(f"export: {len(results)} day(s) encrypted to the vendor and signed, delivered to "
          f"{folder} (the destination the licence names)")
    files = sorted(folder.glob("*.jsonl.gz.age"))
    vendor_dir = root / "vendor-replay"
    _, summary = import_exports(files, vendor_dir, identity_text=vendor.identity_text(),
                                public_key_text=export_public_key_text(config.layout))
    print(f"vendor: verified the chain of {len(files)} day(s) and imported "
          f"{summary.records} records into {vendor_dir}")
    comparison = compare_usage(config, vendor_dir, START, datetime.combine(
        through + timedelta(days=1), datetime.min.time(), UTC))
    print(f"vendor usage statement {'matches' if comparison.same else 'DIFFERS FROM'} the "
          f"master's ({comparison.rows} rows by site and by pool, {START:%Y-%m-%d} to "
          f"{through + timedelta(days=1):%Y-%m-%d})")
    if comparison.first_difference is not None and not quiet:
        mine, theirs = comparison.first_difference
        print(f"  master: {mine}\n  vendor: {theirs}")
    return comparison.same & _vendor_store(vendor, end, quiet)


def _vendor_store(vendor: VendorConfig, end: datetime, quiet: bool) -> bool:
    """``vendor import`` into the vendor's one store for all customers, then the billing line
    and the watchlist (at the demo's time, so that what is late or missing is judged then)."""
    with VendorStore.open(vendor) as store:
        summary = VendorImport(vendor, store, now=end + timedelta(hours=12)).run(
            [vendor.layout.inbox])
        AnalyticsRunner(VendorRecords(vendor, store.engine)).run_once()
        report = billing_report(store.engine, f"{START:%Y-%m}", as_of=end.date(),
                                customer=CUSTOMER)
        watch = Findings(store.engine).watchlist()
    imported = summary.of("imported")
    print(f"vendor import: {len(imported)} day(s) of {CUSTOMER} verified and imported into "
          f"the vendor's store ({summary.records} records)")
    for c in report.customers:
        pred = next((p for p in c.pools if p.pool == "PRED"), None)
        line = (f"vendor billing {c.month}: {c.customer}: {c.agent_hours:.1f} agent-hours, "
                f"{c.over_limit_minutes:.0f} min over the limit on {c.over_limit_days} day(s)")
        if pred is not None:
            line += (f"; PRED peak {pred.peak}/{pred.limit}, {pred.overuse_agent_hours:.1f} "
                     "over-use agent-hours")
        print(line + f"; {c.refused} refused")
    print(f"vendor watchlist: {len(watch)} open finding(s), most severe first")
    for f in watch[:None if not quiet else 5]:
        print(f"  #{f.id} {Severity(f.severity).name.lower()} {f.kind} {f.day or ''}: "
              f"{f.detail}")
    kinds = {f.kind for f in watch}
    return bool(imported) and {"grace_opened", "enforcement", "refused_licence"} <= kinds


__all__ = ["run_demo"]
