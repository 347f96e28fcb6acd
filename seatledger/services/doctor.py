"""``seatledger doctor``: is this data directory fit to run a master? Each check is data
(name, ok, detail) so that the command line, a monitoring probe and the tests read the same.

Checks, in order: the configuration loads (and its ``[alerts]``); the keys are there; every
file is 0600 and every directory 0700; the free disk holds the six-month projection for the
licence's seats; the seal verifies (the store opened read-only, as ``audit verify``); the
last delivered export is recent; the licence has days left and is not in trial mode; the
wall clock is not behind the ledger's last recorded time.
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs

from ledger import LedgerApp, LedgerError
from ledger.domain.licence import Licence
from ledger.domain.summaries import licence_summary
from ledger.persistence.store import sqlite_path
from seatledger.alerts import load_alert_settings
from seatledger.config.settings import Config, ConfigError, load_config
from seatledger.config.store import open_ledger
from seatledger.services.storage import SIX_MONTHS_DAYS, measure

# A licence this close to expiry, an export this old, or a clock this far behind is a
# problem worth a line.
LICENCE_DAYS_LEFT = 30
EXPORT_DAYS_LATE = 2
CLOCK_TOLERANCE = timedelta(seconds=1)
# Bytes per event until the store holds enough events for a measure (README: ~116); a
# few events in a fresh file measure mostly its fixed pages.
DEFAULT_BYTES_PER_EVENT = 150.0
MEASURED_FROM_EVENTS = 1000


@attrs.frozen
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def run_checks(root: Path, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
               ) -> list[Check]:
    """Every check of the data directory at ``root``; later checks that need what an
    earlier one could not give (the configuration, the store) are left out."""
    try:
        config = load_config(root)
        load_alert_settings(config)
    except ConfigError as e:
        return [Check("config", False, str(e))]
    checks = [Check("config", True, str(config.layout.config)), _keys(config),
              _modes(config)]
    try:
        app = open_ledger(config, read_only=True)
    except (LedgerError, OSError) as e:
        return [*checks, Check("store", False, str(e))]
    with app:
        try:
            # Opened read-only, the ledger loads no licence: rebuild it from the log.
            licence = app.replay()
        except (LedgerError, ValueError) as e:
            return [*checks, Check("store", False, f"cannot replay the log: {e}")]
        checks += [_disk(config, app, licence), _seal(app)]
        if licence is None:
            return [*checks, Check("licence", False, "the ledger holds no licence yet")]
        checks += [_export(licence, now()), _licence(licence, now()), _clock(licence, now())]
    return checks


def _keys(config: Config) -> Check:
    layout = config.layout
    missing = [p for p in (layout.at_rest_key, layout.signing_key, layout.signing_pub,
                           layout.ca_dir / "ca.key", layout.ca_dir / "master.key")
               if not p.is_file()]
    if missing:
        return Check("keys", False, "missing: " + ", ".join(str(p) for p in missing))
    return Check("keys", True, f"at-rest, signing and CA keys in {layout.root}")


def _modes(config: Config) -> Check:
    """Files 0600 and directories 0700, owner only (what ``init`` creates)."""
    wrong: list[str] = []
    for path in [config.root, *sorted(config.root.rglob("*"))]:
        try:
            info = path.lstat()
        except FileNotFoundError:  # went away while we looked (a run file)
            continue
        if stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode):
            if info.st_mode & 0o077:
                wrong.append(f"{path} is {stat.S_IMODE(info.st_mode):o}")
    if wrong:
        more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
        return Check("modes", False, "readable by others: " + "; ".join(wrong[:3]) + more
                     + ": chmod 600 files, 700 directories")
    return Check("modes", True, "files 0600, directories 0700")


def _disk(config: Config, app: LedgerApp, licence: Licence | None) -> Check:
    """Free space on the store's file system against six months at the licence's seats."""
    if sqlite_path(app.url) is None:
        return Check("disk", True, "the store is PostgreSQL: watch the database server's disk")
    report = measure(config, app)
    per_event = (report["bytes_per_event"] if report["events"] >= MEASURED_FROM_EVENTS
                 else DEFAULT_BYTES_PER_EVENT)
    seats = sum(licence.limits.values()) if licence is not None else 0
    agents = max(seats, 1)
    needed = per_event * config.events_per_agent_per_day * SIX_MONTHS_DAYS * agents
    free = shutil.disk_usage(config.root).free
    detail = (f"{free / 1e6:.0f} MB free on {config.root}'s file system; six months at "
              f"{agents} agents need {needed / 1e6:.0f} MB")
    return Check("disk", free >= needed, detail)


def _seal(app: LedgerApp) -> Check:
    try:
        report = app.verify()
    except LedgerError as e:
        return Check("seal", False, str(e))
    if report.problem is not None:
        return Check("seal", False, f"audit verify failed: record {report.problem.record}: "
                                    f"{report.problem.reason}")
    return Check("seal", True, f"intact: {report.records} records")


def _export(licence: Licence, now: datetime) -> Check:
    """The last delivered export (or the licence's install, before any) is recent."""
    since = licence.export_due_since
    if since is None:
        return Check("export", True, "no export obligation (no vendor licence installed)")
    if licence.export_overdue:
        return Check("export", False, "export overdue: over-use grace is withdrawn until the "
                                      "next delivered export ('seatledger export run')")
    days = sorted(licence.exported_days)
    if days:
        last = date.fromisoformat(days[-1])
        late = (now.date() - last).days
        detail = f"last export {last} ({late} days ago)"
    else:
        late = (now - since).days
        detail = f"no export delivered yet; licence installed {late} days ago"
    return Check("export", late <= EXPORT_DAYS_LATE, detail)


def _licence(licence: Licence, now: datetime) -> Check:
    summary = licence_summary(licence, now)
    if summary["mode"] == "trial":
        return Check("licence", False, f"trial mode ({summary['trial_reason']}): at most 5 "
                                       "seats; install the vendor's licence")
    left = summary["days_left"]
    detail = f"{summary['licence_id']} expires {summary['expires_at']} ({left} days left)"
    return Check("licence", left is not None and left > LICENCE_DAYS_LEFT, detail)


def _clock(licence: Licence, now: datetime) -> Check:
    last = licence.modified_on
    if last is None:
        return Check("clock", True, "no record yet")
    if now < last - CLOCK_TOLERANCE:
        return Check("clock", False, f"the wall clock ({_at(now)}) is behind the ledger's last "
                                     f"recorded time ({_at(last)}) by {last - now}: fix the "
                                     "clock (NTP)")
    return Check("clock", True, f"wall clock {_at(now)}, last recorded {_at(last)}")


def _at(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}Z"


__all__ = ["Check", "run_checks"]
