"""Command-line commands over the read models: status, usage reports, projection rebuilds,
and the point-in-time audit questions (replay as of T, a user's history, why refused).

Every command first brings the read models up to date from the log (with a progress bar
on a terminal when that is long work), then answers from them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seatledger.cli import output
from seatledger.cli._names import DIMENSIONS, PROJECTION_NAMES
from seatledger.cli.exits import EXIT_OK
from seatledger.services.errors import UsageError

if TYPE_CHECKING:
    from ledger import LedgerApp
    from projections import ProjectionRunner

# The ledger, the read models and the daemons are imported by the commands that use them:
# building this module's parser (``seatledger status --help``) must not load them.

Add = Callable[[Any, str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]
FORMATS = ("table", "csv", "json", "html")


# ------------------------------------------------------------------ argument types
def _instant(text: str) -> datetime:
    """An ISO 8601 timestamp or date (UTC unless it says otherwise)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad timestamp {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+00:00]") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _bound(text: str) -> tuple[datetime, bool]:
    """A report bound: (instant, whether it was given as a whole day)."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return _instant(text), False
    return _instant(text), True


# ------------------------------------------------------------------ plumbing
@contextmanager
def _views(args: argparse.Namespace, desc: str = "projecting") -> Iterator[tuple[LedgerApp, ProjectionRunner]]:
    """The data directory's ledger and its read models, brought up to date."""
    from projections import ProjectionRunner
    from seatledger.config.settings import data_dir_from, load_config
    from seatledger.config.store import open_ledger

    app = open_ledger(load_config(data_dir_from(args.data_dir)))
    try:
        runner = ProjectionRunner(app)
        try:
            _catch_up(args, runner, desc)
            yield app, runner
        finally:
            runner.close()
    finally:
        app.close()


def _catch_up(args: argparse.Namespace, runner: ProjectionRunner, desc: str) -> int:
    """Apply what the read models have not seen yet. If another runner (a running master's)
    is applying the same records, let it: this command then reads what it wrote."""
    from projections import ConcurrentRunnerError

    with output.progress(args, runner.pending(), desc) as advance:
        try:
            return runner.run_once(progress=advance)
        except ConcurrentRunnerError:
            return runner.run_once()


def _emit(args: argparse.Namespace, text: str, target: Path | None = None) -> None:
    if target is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)


def _check_site(app: LedgerApp, site: str | None) -> None:
    from ledger import UnknownSiteError

    if site is not None and app.has_licence and site not in app.licence.sites:
        raise UnknownSiteError(f"site {site!r} was never enrolled here")


# ------------------------------------------------------------------ commands
def cmd_status(args: argparse.Namespace) -> int:
    """Live concurrency and grace status; ``--watch`` refreshes it every second."""
    from projections import render_status_table, to_json
    from seatledger.config.settings import data_dir_from, load_config
    from seatledger.daemons.master import read_children
    from seatledger.services.operator import active_master

    with _views(args) as (app, runner):
        while True:
            status = runner.status()
            now = app.now()
            config = load_config(data_dir_from(args.data_dir))
            children = read_children(config)
            lease = active_master(config)  # a PostgreSQL ledger shared by several masters
            if args.json:
                data = status.as_dict() if status is not None else None
                document = {"as_of": now, "status": data, "daemons": children}
                if lease is not None:
                    document["active_master"] = lease.as_dict()
                print(to_json(document), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    sys.stdout.write("\x1b[H\x1b[2J")
                print(render_status_table(status, now=now), flush=True)
                for name, child in children.items():
                    print(f"{name}: {child['state']} (restarts {child['restarts']}, "
                          f"last exit {child['last_exit']})")
                if lease is not None:
                    print(f"active master: {lease.describe()}")
            if not args.watch:
                return EXIT_OK
            try:
                time.sleep(1.0)
            except KeyboardInterrupt:
                return EXIT_OK
            if not args.json and not sys.stdout.isatty():
                print()
            _catch_up(args, runner, "projecting")


def cmd_report_usage(args: argparse.Namespace) -> int:
    """The usage statement for a period, as a table, CSV, JSON or a self-contained HTML file."""
    start = args.start[0]
    end, whole_day = args.end
    if whole_day:
        end += timedelta(days=1)  # a date given as --to includes that whole day
    if end <= start:
        raise UsageError("--to must not be before --from")
    fmt = "json" if args.json and args.format == "table" else args.format
    from projections import render_html_report, usage_csv, usage_json, usage_table

    with _views(args) as (app, runner):
        as_of = min(app.now(), end)
        if fmt == "html":
            with runner.connect() as conn:
                text = render_html_report(conn, start, end, as_of=as_of)
        else:
            report = runner.usage(start, end, by=args.by, period=args.per, as_of=as_of)
            render = {"table": usage_table, "csv": usage_csv, "json": usage_json}[fmt]
            text = render(report)
    _emit(args, text, args.output)
    if args.output is not None and sys.stderr.isatty():
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_projections_follow(args: argparse.Namespace) -> int:
    """Keep the read models current until SIGINT/SIGTERM or until the parent master is gone
    (the master runs this as a child process, so that the views are updated on the second
    core, not under its interpreter lock)."""
    from seatledger.config.settings import data_dir_from, load_config
    from seatledger.daemons.follower import run_follower

    run_follower(load_config(data_dir_from(args.data_dir)), poll_seconds=args.poll,
                 parent_pid=args.parent_pid or None, feed_fd=args.feed_fd)
    return EXIT_OK


def cmd_projections_rebuild(args: argparse.Namespace) -> int:
    """Drop read models and rebuild them from the whole log."""
    from projections import PROJECTIONS, ProjectionRunner
    from seatledger.config.settings import data_dir_from, load_config
    from seatledger.config.store import open_ledger

    names = [args.name] if args.name else None
    app = open_ledger(load_config(data_dir_from(args.data_dir)))
    try:
        with ProjectionRunner(app) as runner:
            began = time.perf_counter()
            with output.progress(args, app.max_id(), "rebuilding") as advance:
                records = runner.rebuild(names, progress=advance)
            seconds = time.perf_counter() - began
            rebuilt = list(names or PROJECTIONS)
            output.say(args, {"rebuilt": rebuilt, "records": records,
                              "seconds": round(seconds, 3), "positions": runner.positions()},
                       f"rebuilt {', '.join(rebuilt)} from {records} records in {seconds:.1f} s")
    finally:
        app.close()
    return EXIT_OK


def cmd_audit_replay(args: argparse.Namespace) -> int:
    """Who held which seat at an instant, and each pool's state then."""
    from projections import render_state_table, to_json

    with _views(args, "replaying") as (app, runner):
        _check_site(app, args.site)
        state = runner.state_at(args.as_of, args.site)
    if args.json:
        print(to_json(state.as_dict()))
    else:
        print(render_state_table(state))
    return EXIT_OK


def cmd_audit_history(args: argparse.Namespace) -> int:
    """Everything recorded about one user's seats, with reasons."""
    from projections import render_history_table, to_json

    with _views(args, "replaying") as (app, runner):
        _check_site(app, args.site)
        entries = runner.history(args.user, args.site)
    if args.json:
        print(to_json({"user": args.user, "history": list(entries)}))
    else:
        print(render_history_table(args.user, entries))
    return EXIT_OK


def cmd_audit_why_refused(args: argparse.Namespace) -> int:
    """Why a user's requests were refused (all, or the last one at or before --at)."""
    from projections import render_why_refused, to_json

    with _views(args, "replaying") as (app, runner):
        _check_site(app, args.site)
        answers = runner.why_refused(args.user, at=args.at, site=args.site)
    if args.json:
        print(to_json({"user": args.user, "refusals": list(answers)}))
    else:
        print(render_why_refused(args.user, answers))
    return EXIT_OK


# ------------------------------------------------------------------ parser
def register(sub: Any, add: Add, audit_sub: Any) -> None:
    """Add this module's commands to the parser (see seatledger.cli.build_parser)."""
    p = add(sub, "status", cmd_status, "live concurrency and grace status")
    p.add_argument("--watch", action="store_true",
                   help="refresh every second until Ctrl-C (one JSON object per line with --json)")

    report = sub.add_parser("report", help="usage statements (table, csv, json, html)")
    rsub = report.add_subparsers(dest="action", metavar="ACTION")
    rsub.required = True
    p = add(rsub, "usage", cmd_report_usage,
            "usage statement: agent-hours, peaks, over-use and refusals per day (UTC), and "
            "the hours licences' hours used and left")
    p.add_argument("--from", dest="start", type=_bound, required=True, metavar="DATE",
                   help="first day (YYYY-MM-DD) or instant (ISO 8601), UTC")
    p.add_argument("--to", dest="end", type=_bound, required=True, metavar="DATE",
                   help="last day, included (YYYY-MM-DD), or an instant, excluded")
    p.add_argument("--by", choices=DIMENSIONS, default="site",
                   help="one row per site, tenant, campaign or class (and per class)")
    p.add_argument("--per", choices=("day", "hour"), default="day", help="period of a row")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="html is one self-contained file with a chart")
    p.add_argument("--output", type=Path, default=None, metavar="FILE",
                   help="write to FILE instead of standard output")

    proj = sub.add_parser("projections", help="the read models fed from the ledger")
    psub = proj.add_subparsers(dest="action", metavar="ACTION")
    psub.required = True
    p = add(psub, "follow", cmd_projections_follow,
            "keep the read models current (the master runs this for you)")
    p.add_argument("--poll", type=float, default=0.2, metavar="SECONDS",
                   help="how often to look for new records")
    p.add_argument("--parent-pid", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--feed-fd", type=int, default=None, help=argparse.SUPPRESS)
    p = add(psub, "rebuild", cmd_projections_rebuild,
            "drop read models and rebuild them from the whole log")
    p.add_argument("name", nargs="?", choices=list(PROJECTION_NAMES), metavar="NAME",
                   help=f"one of {', '.join(PROJECTION_NAMES)} (default: all)")

    p = add(audit_sub, "replay", cmd_audit_replay,
            "the seats held at an instant, and each pool's state then")
    p.add_argument("--as-of", type=_instant, required=True, metavar="TIMESTAMP",
                   help="ISO 8601 instant, UTC unless it gives an offset")
    p.add_argument("--site", default=None, help="only this site's seats")
    p = add(audit_sub, "history", cmd_audit_history,
            "everything recorded about one user's seats, with reasons")
    p.add_argument("--user", required=True)
    p.add_argument("--site", default=None, help="only at this site")
    p = add(audit_sub, "why-refused", cmd_audit_why_refused,
            "why a user's requests were refused, with the pool's state at the time")
    p.add_argument("--user", required=True)
    p.add_argument("--at", type=_instant, default=None, metavar="TIMESTAMP",
                   help="only the last refusal at or before this instant")
    p.add_argument("--site", default=None, help="only at this site")
