"""The ``seatledger`` command line.

Exit status: 0 success, 1 refused or failed, 2 bad usage. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporters.errors import ExportError
from ledger import (
    AGENT_CLASSES,
    GracePolicy,
    LedgerError,
    parse_duration,
    parse_limits,
)
from ledger.persistence.store import create_key_file
from seatledger.bootstrap import open_ledger
from seatledger.cli import output
from seatledger.config.keys import create_signing_key
from seatledger.config.settings import (
    ConfigError,
    Layout,
    data_dir_from,
    load_config,
    render_config,
)
from transport import ProtocolError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad usage detected after parsing (exit 2)."""


class Refused(Exception):
    """The operation ran and the answer is no (exit 1), with a message already decided."""


# ------------------------------------------------------------------ argument types
def _limits(text: str) -> dict[str, int]:
    try:
        return parse_limits(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _date(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad date {text!r}: use YYYY-MM-DD or an ISO 8601 timestamp") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _optional_int(text: str) -> int | None:
    if text.lower() in ("none", "off", ""):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


# ------------------------------------------------------------------ commands
def cmd_init(args: argparse.Namespace) -> int:
    root = data_dir_from(args.data_dir)
    layout = Layout(root)
    if layout.config.exists() or layout.keys.exists():
        raise Refused(f"{root} already holds a seatledger data directory; not overwriting it")
    root.mkdir(parents=True, exist_ok=True)
    origin = args.origin or f"seatledger.{os.urandom(4).hex()}"
    layout.config.write_text(render_config(origin, args.store_url))
    create_key_file(layout.at_rest_key)
    layout.keys.chmod(0o700)
    create_signing_key(layout.signing_key, layout.signing_pub)
    from seatledger.config.ca import create_ca  # the CA the wire uses; kept out of the import path

    create_ca(layout.ca_dir, origin)
    from seatledger.cli.export import ensure_export_keys

    ensure_export_keys(layout)
    config = load_config(root)
    with open_ledger(config):
        pass
    output.say(args, {"data_dir": str(root), "store": config.store_url, "origin": origin},
               f"initialised {root}\n  store   {config.store_url}\n  keys    {layout.keys} (0600)"
               f"\n  CA      {layout.ca_dir}")
    return EXIT_OK


def cmd_licence_issue(args: argparse.Namespace) -> int:
    with _ledger(args) as app:
        licence = app.issue_licence(
            customer=args.customer,
            limits=args.seats,
            total_pred_acd=args.total_pred_acd,
            expires_at=args.expires,
            policy=GracePolicy(args.grace, args.rearm, args.ceiling),
            cutoff_seconds=args.cutoff,
        )
        output.licence(args, licence)
    return EXIT_OK


def cmd_licence_amend(args: argparse.Namespace) -> int:
    with _ledger(args) as app:
        current = app.licence.policy
        terms: dict[str, Any] = {}
        if args.seats is not None:
            # Classes not named keep their limit; give CLASS=0 to drop one.
            limits = {**app.licence.limits, **args.seats}
            terms["limits"] = {c: n for c, n in limits.items() if n > 0}
        if args.total_pred_acd is not False:
            terms["total_pred_acd"] = args.total_pred_acd
        if args.expires is not None:
            terms["expires_at"] = args.expires
        if args.grace is not None or args.rearm is not None or args.ceiling is not False:
            terms["policy"] = GracePolicy(
                args.grace if args.grace is not None else current.grace_seconds,
                args.rearm if args.rearm is not None else current.rearm_seconds,
                current.ceiling_percent if args.ceiling is False else args.ceiling,
            )
        if not terms:
            raise UsageError("nothing to amend: give --seats, --total-pred-acd, --expires, "
                             "--grace, --rearm or --ceiling")
        app.amend_licence(**terms)
        output.licence(args, app.licence)
    return EXIT_OK


def cmd_licence_show(args: argparse.Namespace) -> int:
    with _ledger(args) as app:
        output.licence(args, app.licence)
    return EXIT_OK


def cmd_site_enrol(args: argparse.Namespace) -> int:
    from seatledger.services.sites import enrol_site

    with _ledger(args) as app:
        app.licence  # noqa: B018 - raises a clear error when no licence is issued yet
        bundle = enrol_site(_ledger_config(args), app, args.name,
                            local_limits=args.local_limit or {}, master=args.master,
                            secondary=args.secondary,
                            output=Path(args.output) if args.output else None)
        site = app.licence.sites[args.name]
        output.say(args, {"site": site.name, "local_limits": site.local_limits,
                          "bundle": str(bundle), "fingerprint": site.fingerprint},
                   f"enrolled site {site.name}"
                   + (f" (local limits {_fmt(site.local_limits)})" if site.local_limits else "")
                   + f"\n  bundle {bundle} (0600): give it to the site's slave connector")
    return EXIT_OK


def _ledger_config(args: argparse.Namespace) -> Any:
    return load_config(data_dir_from(args.data_dir))


def cmd_master(args: argparse.Namespace) -> int:
    import trio

    from seatledger.daemons.runners import run_master

    config = _ledger_config(args)
    listen = args.listen or config.listen
    trio.run(lambda: run_master(config, listen, ready=lambda where: print(
        f"seatledger master serving {where}", flush=True)))
    return EXIT_OK


def cmd_slave(args: argparse.Namespace) -> int:
    import trio

    from seatledger.config.bundle import Bundle
    from seatledger.daemons.runners import run_slave
    from seatledger.slave.connector import SlaveSettings

    bundle = Bundle.read(Path(args.bundle))
    state = Path(args.state_dir).absolute()
    settings = SlaveSettings(retry_interval=args.retry, cutoff_attempts=args.attempts,
                             cutoff_retry=args.cutoff_retry)
    trio.run(lambda: run_slave(bundle, state, socket_path=_socket(args), settings=settings,
                               ready=lambda where: print(f"seatledger slave {bundle.site}: "
                                                         f"socket {where}", flush=True)))
    return EXIT_OK


def _socket(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None):
        return Path(args.socket)
    return Path(args.state_dir).absolute() / "slave.sock"


def _ask_slave(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any]:
    from seatledger.slave.local_socket import request

    path = _socket(args)
    try:
        return request(path, payload)
    except FileNotFoundError:
        raise Refused(f"no slave is running at {path} (start 'seatledger slave')") from None
    except OSError as e:
        raise Refused(f"cannot reach the slave at {path}: {e.strerror or e}") from None


def cmd_seat_acquire(args: argparse.Namespace) -> int:
    answer = _ask_slave(args, {"op": "acquire", "user": args.user, "class": args.agent_class,
                               "tenant": args.tenant, "campaign": args.campaign})
    if not answer.get("ok"):
        if args.json:
            print(json.dumps(answer))
        raise Refused(f"refused: {answer.get('reason')}: {answer.get('detail', '')}".rstrip(": "))
    text = f"seat {answer['seat']} for {answer['user']} ({answer['class']}): {answer['status']}"
    if answer.get("deadline"):
        text += f", grace until {answer['deadline']}"
    output.say(args, answer, text)
    return EXIT_OK


def cmd_seat_release(args: argparse.Namespace) -> int:
    answer = _ask_slave(args, {"op": "release", "user": args.user})
    if not answer.get("ok"):
        if args.json:
            print(json.dumps(answer))
        raise Refused(f"refused: {answer.get('reason')}: {answer.get('detail', '')}".rstrip(": "))
    output.say(args, answer, f"released {args.user}")
    return EXIT_OK


def cmd_seat_list(args: argparse.Namespace) -> int:
    answer = _ask_slave(args, {"op": "list"})
    rows = [(s["user"], s["class"], s["tenant"], s["campaign"], s["seat"], s["status"])
            for s in answer["seats"]]
    output.say(args, answer, f"slave {answer['state']}"
               + (f" (master {answer['master']})" if answer.get("master") else "") + "\n"
               + output.table(("user", "class", "tenant", "campaign", "seat", "status"), rows))
    return EXIT_OK


def cmd_site_revoke(args: argparse.Namespace) -> int:
    with _ledger(args) as app:
        released = app.revoke_site(args.name)
        output.say(args, {"site": args.name, "released": len(released)},
                   f"revoked site {args.name}; released {len(released)} seat(s)")
    return EXIT_OK


def cmd_site_list(args: argparse.Namespace) -> int:
    with _ledger(args) as app:
        output.sites(args, app.licence)
    return EXIT_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    with _ledger(args, read_only=True) as app:
        total = app.max_id()
        with output.progress(args, total, "verifying") as advance:
            report = app.verify(progress=advance)
        data = report.as_dict()
        if report.ok:
            output.say(args, data, f"intact: {report.records} records, {report.checkpoints} "
                                   f"checkpoints, root {report.root.hex()[:16]}...")
            return EXIT_OK
        assert report.problem is not None
        if args.json:
            print(json.dumps(data))
        raise Refused(f"audit verify failed: record {report.problem.record}: "
                      f"{report.problem.reason}")


def cmd_storage(args: argparse.Namespace) -> int:
    config = load_config(data_dir_from(args.data_dir))
    with open_ledger(config) as app:
        from seatledger.services.storage import measure

        report = measure(config, app)
        output.storage(args, report)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from seatledger.demo.story import run_demo

    return run_demo(args.data_dir, quiet=args.quiet)


def _fmt(limits: dict[str, int]) -> str:
    return ",".join(f"{c}={limits[c]}" for c in AGENT_CLASSES if c in limits)


class _ledger:
    """Open the data directory's ledger for one command and close it after."""

    def __init__(self, args: argparse.Namespace, *, read_only: bool = False):
        self.config = load_config(data_dir_from(args.data_dir))
        self.read_only = read_only

    def __enter__(self) -> Any:
        self.app = open_ledger(self.config, read_only=self.read_only)
        return self.app

    def __exit__(self, *exc: object) -> None:
        self.app.close()


# ------------------------------------------------------------------ parser
def _add_common(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    for action in common._actions:
        parser._add_action(action)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="data directory (default: $SEATLEDGER_DATA_DIR or ./seatledger-data)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")

    parser = argparse.ArgumentParser(
        prog="seatledger", parents=[common],
        description="Event-sourced licensing ledger for multi-site concurrent-seat licences.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def add(parent: Any, name: str, fn: Callable[[argparse.Namespace], int],
            help_text: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help_text,
                                                       description=help_text)
        p.set_defaults(fn=fn)
        return p

    p = add(sub, "init", cmd_init, "create a data directory: config, keys, CA and the store")
    p.add_argument("--store-url", help="store URL (default: an SQLite file in the data directory)")
    p.add_argument("--origin", help="name under which checkpoints are signed")

    lic = sub.add_parser("licence", help="issue, amend or show the licence", parents=[common])
    lsub = lic.add_subparsers(dest="action", metavar="ACTION")
    lsub.required = True
    p = add(lsub, "issue", cmd_licence_issue, "issue the licence")
    p.add_argument("--customer", required=True)
    p.add_argument("--seats", type=_limits, required=True, metavar="PRED=150,ACD=50")
    p.add_argument("--total-pred-acd", type=_optional_int, default=None, metavar="N")
    p.add_argument("--grace", type=_duration, default=48 * 3600, metavar="48h")
    p.add_argument("--rearm", type=_duration, default=30 * 86400, metavar="30d")
    p.add_argument("--ceiling", type=_optional_int, default=None, metavar="PERCENT",
                   help="cap over-use during grace at this percentage of the limit (e.g. 125)")
    p.add_argument("--expires", type=_date, default=None, metavar="DATE",
                   help="expiry (default: one year from now; at most one year)")
    p.add_argument("--cutoff", type=_duration, default=15 * 60, metavar="15m",
                   help="how long a disconnected site keeps its seats before it is cut off")
    p = add(lsub, "amend", cmd_licence_amend, "change the licence terms (re-arms grace)")
    p.add_argument("--seats", type=_limits, default=None, metavar="PRED=150,ACD=50")
    p.add_argument("--total-pred-acd", type=_optional_int, default=False, metavar="N|none")
    p.add_argument("--grace", type=_duration, default=None, metavar="48h")
    p.add_argument("--rearm", type=_duration, default=None, metavar="30d")
    p.add_argument("--ceiling", type=_optional_int, default=False, metavar="PERCENT|none")
    p.add_argument("--expires", type=_date, default=None, metavar="DATE")
    add(lsub, "show", cmd_licence_show, "show the licence, its limits and grace state")

    site = sub.add_parser("site", help="enrol, revoke or list sites", parents=[common])
    ssub = site.add_subparsers(dest="action", metavar="ACTION")
    ssub.required = True
    p = add(ssub, "enrol", cmd_site_enrol, "enrol a site and write its connection bundle")
    p.add_argument("name")
    p.add_argument("--local-limit", type=_limits, default=None, metavar="PRED=40,ACD=10")
    p.add_argument("--master", metavar="HOST:PORT", help="primary master (default: [master] listen)")
    p.add_argument("--secondary", metavar="HOST:PORT", help="secondary master")
    p.add_argument("--output", metavar="FILE",
                   help="bundle file (default: <data-dir>/bundles/NAME.bundle)")
    p = add(ssub, "revoke", cmd_site_revoke, "revoke a site (its seats are released)")
    p.add_argument("name")
    add(ssub, "list", cmd_site_list, "list enrolled sites")

    audit = sub.add_parser("audit", help="verify the audit seal", parents=[common])
    asub = audit.add_subparsers(dest="action", metavar="ACTION")
    asub.required = True
    add(asub, "verify", cmd_audit_verify,
        "verify every stored record against the signed Merkle seal")

    from seatledger.cli import export as cli_export
    from seatledger.cli import reports as cli_reports

    cli_reports.register(sub, add, asub)
    cli_export.register(sub, add)

    p = add(sub, "master", cmd_master, "run the master daemon (until SIGINT/SIGTERM)")
    p.add_argument("--listen", metavar="HOST:PORT", help="address (default: [master] listen)")

    slave_help = "the slave's state directory (journal and socket; default ./seatledger-slave)"
    p = add(sub, "slave", cmd_slave, "run a slave connector with its local socket")
    p.add_argument("--bundle", required=True, metavar="FILE")
    p.add_argument("--state-dir", default="seatledger-slave", metavar="DIR", help=slave_help)
    p.add_argument("--socket", metavar="PATH", help="local socket (default: STATE_DIR/slave.sock)")
    p.add_argument("--retry", type=_duration, default=300, metavar="5m",
                   help="interval between reconnection attempts")
    p.add_argument("--attempts", type=int, default=3, help="failed attempts before cut-off")
    p.add_argument("--cutoff-retry", type=_duration, default=900, metavar="15m")

    seat = sub.add_parser("seat", help="talk to a running slave, as a dialler would",
                          parents=[common])
    seat_sub = seat.add_subparsers(dest="action", metavar="ACTION")
    seat_sub.required = True
    seat_common = argparse.ArgumentParser(add_help=False)
    seat_common.add_argument("--state-dir", default="seatledger-slave", metavar="DIR",
                             help=slave_help)
    seat_common.add_argument("--socket", metavar="PATH")
    p = add(seat_sub, "acquire", cmd_seat_acquire, "log an agent on")
    _add_common(p, seat_common)
    p.add_argument("--user", required=True)
    p.add_argument("--class", dest="agent_class", required=True, choices=AGENT_CLASSES)
    p.add_argument("--tenant", default="")
    p.add_argument("--campaign", default="")
    p = add(seat_sub, "release", cmd_seat_release, "log an agent off")
    _add_common(p, seat_common)
    p.add_argument("--user", required=True)
    p = add(seat_sub, "list", cmd_seat_list, "the seats the slave holds, and its state")
    _add_common(p, seat_common)

    add(sub, "storage", cmd_storage,
        "bytes used, per event, and projected per agent over six months")

    p = add(sub, "demo", cmd_demo, "run the whole system end to end on a virtual clock")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, default in (("data_dir", None), ("json", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    try:
        try:
            return int(args.fn(args))
        except BaseExceptionGroup as group:
            raise _leaf(group) from group
    except UsageError as e:
        print(f"seatledger: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (Refused, LedgerError, ConfigError, ExportError, ProtocolError) as e:
        print(f"seatledger: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("seatledger: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"seatledger: {e.strerror or e}{':' if where else ''}{where}", file=sys.stderr)
        return EXIT_FAILED


def _leaf(group: BaseExceptionGroup) -> BaseException:
    """The one error a daemon's nursery failed with (trio wraps it in groups)."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


if __name__ == "__main__":
    sys.exit(main())
