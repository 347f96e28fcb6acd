"""``seatledger master`` and ``seatledger slave``: run the daemons."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seatledger.cli.common import (
    Add,
    duration_arg,
)
from seatledger.cli.exits import EXIT_OK

# Standard library only (the daemons import the rest when they run, not to show --help).
from seatledger.daemons.logs import LOG_FORMATS, configure_logging


def cmd_master(args: argparse.Namespace) -> int:
    import attrs
    import trio

    from seatledger.config.settings import data_dir_from, load_config
    from seatledger.daemons.master import run_master

    configure_logging(args.log_format)
    config = load_config(data_dir_from(args.data_dir))
    if args.upstream_bundle:
        config = attrs.evolve(config, upstream_bundle=Path(args.upstream_bundle).absolute())
    listen = args.listen or config.listen
    trio.run(lambda: run_master(
        config, listen, force_standby=args.standby,
        ready=lambda where: print(f"seatledger master serving {where}", flush=True),
        standby=lambda where: print(f"seatledger master standby {where}", flush=True)))
    return EXIT_OK


def cmd_slave(args: argparse.Namespace) -> int:
    import trio

    from seatledger.cli.seat import socket_path
    from seatledger.config.bundle import Bundle
    from seatledger.daemons.slave import run_slave
    from seatledger.slave.connector import SlaveSettings

    configure_logging(args.log_format)
    bundle = Bundle.read(Path(args.bundle))
    state = Path(args.state_dir).absolute()
    settings = SlaveSettings(retry_interval=args.retry, cutoff_attempts=args.attempts,
                             cutoff_retry=args.cutoff_retry)
    trio.run(lambda: run_slave(bundle, state, socket_path=socket_path(args), settings=settings,
                               log_alerts=args.log_format == "json",
                               ready=lambda where: print(f"seatledger slave {bundle.site}: "
                                                         f"socket {where}", flush=True)))
    return EXIT_OK

def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> None:
    """Add this group's commands to the parser."""
    p = add(sub, "master", cmd_master, "run the master daemon (until SIGINT/SIGTERM)")
    p.add_argument("--listen", metavar="HOST:PORT", help="address (default: [master] listen)")
    p.add_argument("--standby", action="store_true",
                   help="stay a standby (PostgreSQL store shared with another master): never "
                        "take the lease, e.g. for maintenance")
    p.add_argument("--upstream-bundle", metavar="FILE",
                   help="chain this master under an upstream master: the bundle the upstream "
                        "enrolled it with (default: [upstream] bundle)")
    _log_format(p)

    slave_help = "the slave's state directory (journal and socket; default ./seatledger-slave)"
    p = add(sub, "slave", cmd_slave, "run a slave connector with its local socket")
    p.add_argument("--bundle", required=True, metavar="FILE")
    p.add_argument("--state-dir", default="seatledger-slave", metavar="DIR", help=slave_help)
    p.add_argument("--socket", metavar="PATH", help="local socket (default: STATE_DIR/slave.sock)")
    p.add_argument("--retry", type=duration_arg, default=300, metavar="5m",
                   help="interval between reconnection attempts")
    p.add_argument("--attempts", type=int, default=3, help="failed attempts before cut-off")
    p.add_argument("--cutoff-retry", type=duration_arg, default=900, metavar="15m")
    _log_format(p)


def _log_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                   help="text (plain lines) or json (one JSON object a line: time, level, "
                        "event, site, ...)")
