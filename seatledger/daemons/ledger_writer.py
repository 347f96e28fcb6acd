"""The ledger writer process: a child of ``seatledger master`` (see
:mod:`seatledger.master.ledger_process`). Not a command of its own.

It opens the data directory's ledger, says ``ready`` on the socket it was given, and then
runs each batch it is sent - decide, encode, seal, commit - in the time the master dictated,
answering with the outcomes and the events committed. It ends when the master says
``close`` (sealing its tail first), when the socket closes, or when the master dies.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import socket
import sys
from functools import partial
from pathlib import Path
from typing import Any

from exporters import ExportError
from ledger import LedgerApp, LedgerError
from ledger.clock import DictatedTime
from seatledger.bootstrap import export_schedule
from seatledger.config.settings import Config, ConfigError, load_config
from seatledger.config.store import open_ledger
from seatledger.daemons.heap import settle_heap
from seatledger.daemons.orphans import die_with_parent, watch_parent
from seatledger.master.admin import run_operation
from seatledger.master.committer import Committer
from seatledger.master.ledger_process import FrameReader, encode_frame

log = logging.getLogger("seatledger.writer")

EXPORT = "export.run"
"""The daily export, run in the writer process (it records AuditTrailExported)."""


def operations(config: Config) -> Any:
    """The named calls a master may send: the admin socket's operations and the export."""
    schedule = export_schedule(config)

    def run(app: LedgerApp, name: str, args: dict[str, Any]) -> Any:
        if name != EXPORT:
            return run_operation(app, name, args)
        if schedule is None:
            return {"days": [], "error": "no [export] settings"}
        today = dt.date.fromisoformat(str(args["today"]))
        days: list[dt.date] = []
        error = ""
        try:
            days = schedule.due(app, today)
            schedule.run(app, days)
        except (ConfigError, ExportError, OSError) as e:
            error = str(e)
        return {"days": [d.isoformat() for d in days], "error": error}

    return run


def serve(app: LedgerApp, sock: socket.socket, run: Any) -> None:
    """Answer the master's batches until it says close (the ledger is closed then, its tail
    sealed) or goes away (nothing more is written: another master may start now)."""
    time = DictatedTime()
    app.timekeeper = time
    app.keep_fed = True
    settle_heap()
    # The master's copy of the licence is this one's: it need not read the store itself.
    sock.sendall(encode_frame(("ready", app.licence if app.has_licence else None)))
    frames = FrameReader(sock)
    with Committer(app, run) as committer:
        while True:
            if committer.writing and not frames.arrived():
                sock.sendall(encode_frame(committer.finish()))
            try:
                message = frames.read()
            except EOFError:
                return
            if message[0] == "close":
                if committer.writing:
                    sock.sendall(encode_frame(committer.finish()))
                app.close()
                sock.sendall(encode_frame(("closed",)))
                return
            _, recorded, step, commands = message
            for reply in committer.batch(commands, partial(time.give, recorded, step)):
                sock.sendall(encode_frame(reply))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="seatledger-ledger-writer")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    sock = socket.socket(fileno=args.fd)
    watch_parent(args.parent_pid, lambda: sock.shutdown(socket.SHUT_RDWR))
    try:
        config = load_config(Path(args.data_dir))
        app = open_ledger(config)
    except (ConfigError, LedgerError) as e:
        sock.sendall(encode_frame(("error", str(e))))
        return 1
    try:
        serve(app, sock, operations(config))
    except OSError:
        pass  # the master is gone: nothing left to answer, and nothing more is written
    return 0


if __name__ == "__main__":
    sys.exit(main())
