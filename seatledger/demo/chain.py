"""The demo's last act: three tiers (site → master → supermaster) over real mutual TLS.

A reseller runs a supermaster; the customer's branch master is enrolled there as a site
(``branch``, allowed 3 PRED seats at the top) and chained under it with that bundle; a desk
site is enrolled at the branch. Each seat must pass both masters; the top's refusal arrives
at the desk as ``upstream:site_limit``; while the top is unreachable the branch grants on its
own licence and journals for the top, which records those seats once when it is back.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import trio

from ledger import LedgerApp, ManualClock, Site
from seatledger.bootstrap import build_master, build_slave, master_settings
from seatledger.config.bundle import Bundle
from seatledger.config.settings import Config
from seatledger.config.store import open_ledger
from seatledger.demo.relay import Relay
from seatledger.master.server import MasterSettings
from seatledger.services.datadir import init_data_dir
from seatledger.services.operator import DirectPort, install_licence
from seatledger.services.sites import enrol_site
from seatledger.slave.chained import UPSTREAM_SETTINGS, ChainedConnector
from seatledger.slave.connector import SeatRefusedError, SlaveSettings
from seatledger.vendor.home import VendorConfig

Issue = Callable[[VendorConfig, Config, Path, dict[str, int], datetime, str], Path]


async def three_tiers(root: Path, vendor: VendorConfig, issue: Issue,
                      now: Callable[[], datetime], say: Callable[[str], None]) -> bool:
    """Play the chain; True if every tier ended up counting the same seats."""
    top_config, top_app = _master_dir(root / "supermaster", "seatledger.reseller", "Reseller",
                                      vendor, issue, now)
    branch_config, branch_app = _master_dir(root / "branch", "seatledger.branch", "Branch",
                                            vendor, issue, now)
    up = Bundle.read(enrol_site(top_config, top_app, "branch", local_limits={"PRED": 3},
                                master="127.0.0.1:1", output=root / "branch-upstream.bundle"))
    desk = Bundle.read(enrol_site(branch_config, branch_app, "desk", local_limits={"PRED": 20},
                                  master="127.0.0.1:1", output=root / "desk.bundle"))
    say("chain: a reseller's supermaster enrols the branch master as its site 'branch' "
        "(3 PRED seats there); the branch master enrols the site 'desk'")
    top = build_master(top_config, app=top_app, now=now, settings=_settings(top_config))
    async with trio.open_nursery() as nursery:
        top_port = (await nursery.start(top.run, "127.0.0.1", 0))[0].socket.getsockname()[1]
        relay = Relay(top_port)  # the branch's WAN link to the reseller
        await nursery.start(relay.run)
        upstream = ChainedConnector(_at(up, relay.port), root / "branch" / "upstream",
                                    settings=UPSTREAM_SETTINGS, now=now)
        chained = build_master(branch_config, app=branch_app, now=now,
                               settings=_settings(branch_config), upstream=upstream)
        port = (await nursery.start(chained.run, "127.0.0.1", 0))[0].socket.getsockname()[1]
        async with build_slave(_at(desk, port), root / "desk", settings=SlaveSettings(),
                               now=now) as slave:
            await slave.wait_online()
            await trio.sleep(1)

            async def log_on(users: list[str]) -> str:
                outcomes: list[str] = []
                for user in users:
                    try:
                        outcomes.append((await slave.acquire(user, "PRED")).status)
                    except SeatRefusedError as e:
                        outcomes.append(f"refused ({e.reason})")
                return ", ".join(outcomes)

            say(f"chain: desk logs on 4 PRED agents -> {await log_on(['d1', 'd2', 'd3', 'd4'])}")
            say(f"chain: seats at the branch {_held(branch_app.licence.sites['desk'])}, at the "
                f"supermaster {_held(top_app.licence.sites['branch'])} (as desk/USER)")
            relay.cut()
            say("chain: the branch's link to the supermaster fails")
            await trio.sleep(60)
            say(f"chain: desk logs on 2 more -> {await log_on(['d5', 'd6'])}: the branch's own "
                "licence is the limit while the top is unreachable; journalled for the top")
            relay.restore()
            await trio.sleep(600)
            offline = sum(1 for _, e in top_app.events()
                          if type(e).__name__ == "SeatGranted" and getattr(e, "offline", False))
            say(f"chain: link back, the branch synced; the supermaster recorded {offline} "
                f"offline seat(s) once and counts {_held(top_app.licence.sites['branch'])}")
        below = {f"desk/{u}" for u in branch_app.licence.sites["desk"].seats}
        same = below == set(top_app.licence.sites["branch"].seats)
        for master in (chained, top):
            master.stop()
            await master.stopped.wait()
        nursery.cancel_scope.cancel()
    top_app.close()
    branch_app.close()
    return same


def _master_dir(root: Path, origin: str, customer: str, vendor: VendorConfig, issue: Issue,
                now: Callable[[], datetime]) -> tuple[Config, LedgerApp]:
    """A master's data directory and ledger, with a vendor-signed licence installed."""
    config = init_data_dir(root, origin=origin, history=False,
                           vendor_key=vendor.layout.licence_pub)
    app = open_ledger(config, clock=ManualClock(now()))
    app.start_trial()
    licence = issue(vendor, config, root, {"PRED": 100, "ACD": 20}, now(), customer)
    install_licence(DirectPort(app), config, licence)
    return config, app


def _settings(config: Config) -> MasterSettings:
    # Long heartbeats: each one costs real time on the virtual clock.
    return master_settings(config, worker_thread=False, heartbeat_interval=1800,
                           refresh_interval=3600)


def _at(bundle: Bundle, port: int) -> Bundle:
    return Bundle(bundle.site, bundle.ca_pem, bundle.cert_pem, bundle.key_pem,
                  f"127.0.0.1:{port}")


def _held(site: Site) -> str:
    return f"{len(site.seats)} seat(s)"


__all__ = ["three_tiers"]
