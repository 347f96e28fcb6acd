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
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import attrs

from exporters import ExportError
from ledger import LedgerApp, LedgerError, StoreError
from ledger.application import Staged
from ledger.clock import DictatedTime
from ledger.persistence.fencing import FencedError
from seatledger.bootstrap import export_schedule
from seatledger.config.settings import Config, ConfigError, load_config
from seatledger.config.store import open_ledger
from seatledger.daemons.orphans import die_with_parent, watch_parent
from seatledger.master.admin import run_operation
from seatledger.master.ledger_process import FrameReader, RemoteCall, encode_frame
from seatledger.master.writer import execute_batch

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


class Committer:
    """Overlapped commits: a batch of seat commands is decided and encoded here
    (:meth:`LedgerApp.stage`) while the batch before it is written in a thread of its own
    (its fdatasync lets go of the interpreter lock), so that a batch costs its decisions or
    its commit, whichever is longer, not both. Answers leave in order, each only once its
    batch is durable.

    When a write fails, the batch staged after it was decided on a licence a batch ahead of
    the store: the ledger is reloaded (:meth:`LedgerApp.recover`) and both are run again,
    in order and each in its own time, as if they had come one by one. A batch that
    settling the one before must see the store's licence for (a checkpoint or snapshot is
    due), an operator's call, and a ledger without a licence wait for the write in flight
    and run alone."""

    def __init__(self, app: LedgerApp, run: Any) -> None:
        self.app = app
        self.run = run
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="commit")
        self._writing: _Writing | None = None

    def __enter__(self) -> Committer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)  # a write in flight ends (the master is gone)

    @property
    def writing(self) -> bool:
        """Whether a batch is being written, its answer not yet given."""
        return self._writing is not None

    def batch(self, commands: list[Any], set_time: Callable[[], None]) -> list[tuple[Any, ...]]:
        """Take the next batch (``set_time`` gives the ledger the master's time for it);
        the answers ready to send, in order: the batch before it, if it is done, and this
        one, if it ran alone."""
        app, replies = self.app, []
        seats = app.has_licence and not any(isinstance(c, RemoteCall) for c in commands)
        if self._writing is not None and not (seats and app.overlaps(self._writing.staged)):
            replies.append(self.finish())
        set_time()
        if not seats:
            replies.append(self._alone(commands))
            return replies
        loads = app.loads
        try:
            if self._writing is None:
                app.refresh()  # (with a write in flight, another writer shows as its failure)
            staged = app.stage(commands)
        except StoreError:  # nothing of it recorded
            staged = None
        if self._writing is not None:
            reply, as_staged = self._finish()
            replies.append(reply)
            if not as_staged:
                staged = None  # decided on a licence ahead of the store
        if staged is None:
            self._recover()
            set_time()  # (the batch before may have run again, in its own time)
            replies.append(self._alone(commands))
            return replies
        written = self._pool.submit(app.write_staged, staged)
        self._writing = _Writing(commands, set_time, staged, written, loads)
        return replies

    def finish(self) -> tuple[Any, ...]:
        """Wait for the write in flight; its batch's answer."""
        return self._finish()[0]

    def _finish(self) -> tuple[tuple[Any, ...], bool]:
        """finish(), and whether the batch was written as staged (if not, anything staged
        after it was decided on a licence ahead of the store)."""
        assert self._writing is not None
        writing, self._writing = self._writing, None
        app = self.app
        try:
            writing.written.result()
        except FencedError as e:
            return ("fenced", str(e)), False
        except StoreError:
            # Perhaps only a race with another process: as a batch alone (which refreshes,
            # and tries once more).
            self._recover()
            writing.set_time()
            return self._alone(writing.commands, writing.loads), False
        outcomes = app.settle_staged(writing.staged)
        return ("done", outcomes, app.take_fed(), app.loads != writing.loads), True

    def _recover(self) -> None:
        """Bring the licence in memory back to the store's, if it is ahead (a staged batch
        or a failed write); if the store cannot be read, the next batch's refresh retries."""
        app = self.app
        if app.has_licence and app.ahead:
            try:
                app.recover()
            except StoreError:
                pass

    def _alone(self, commands: list[Any], loads: int | None = None) -> tuple[Any, ...]:
        """Run one batch from decision to commit, as without overlap."""
        app = self.app
        loads = app.loads if loads is None else loads
        try:
            outcomes = execute_batch(app, commands, self.run)
        except FencedError as e:
            return ("fenced", str(e))
        except StoreError as e:
            app.take_fed()  # a failed commit's events are not the store's
            return ("failed", str(e))
        return ("done", outcomes, app.take_fed(), app.loads != loads)


@attrs.frozen
class _Writing:
    """A batch being written: its commands and time (to run it again), what was staged,
    the write, and the ledger's load count before it."""

    commands: list[Any]
    set_time: Callable[[], None]
    staged: Staged
    written: Future[None]
    loads: int


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
