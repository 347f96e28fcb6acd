"""``seatledger init`` and ``seatledger storage``: the data directory."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from seatledger.cli import output
from seatledger.cli.common import (
    Add,
)
from seatledger.cli.exits import EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from seatledger.config.settings import data_dir_from
    from seatledger.services.datadir import init_data_dir

    root = data_dir_from(args.data_dir)
    config = init_data_dir(root, origin=args.origin, store_url=args.store_url,
                           vendor_key=Path(args.vendor_key) if args.vendor_key else None,
                           also_names=args.also_name)
    layout = config.layout
    output.say(args, {"data_dir": str(root), "store": config.store_url, "origin": config.origin},
               f"initialised {root}\n  store   {config.store_url}\n  keys    {layout.keys} (0600)"
               f"\n  CA      {layout.ca_dir}")
    return EXIT_OK


def cmd_storage(args: argparse.Namespace) -> int:
    from seatledger.config.settings import data_dir_from, load_config
    from seatledger.config.store import open_ledger
    from seatledger.services.storage import measure

    config = load_config(data_dir_from(args.data_dir))
    with open_ledger(config) as app:
        report = measure(config, app)
        output.storage(args, report)
    return EXIT_OK

def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> None:
    """Add this group's commands to the parser."""
    p = add(sub, "init", cmd_init, "create a data directory: config, keys, CA and the store")
    p.add_argument("--store-url", help="store URL (default: an SQLite file in the data directory)")
    p.add_argument("--origin", help="name under which checkpoints are signed")
    p.add_argument("--vendor-key", metavar="FILE",
                   help="the vendor's licence key ('seatledger vendor key'), pinned here: only "
                        "licences it signed can be installed")
    p.add_argument("--also-name", action="append", default=[], metavar="HOST",
                   help="another host name or IP address for the master's certificate (a "
                        "standby master's; repeatable)")

    add(sub, "storage", cmd_storage,
        "bytes used, per event, and projected per agent over six months")
