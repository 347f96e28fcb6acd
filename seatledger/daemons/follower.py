"""The read-model follower: ``seatledger projections follow``, a child process of the master.

It must end with its master, even a SIGKILLed one: the kernel sends it SIGTERM when the
parent dies (``PR_SET_PDEATHSIG``, Linux), and a watcher thread checks the parent twice a
second as well (other systems, and a parent that died before the child was set up).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from projections import ProjectionRunner
from seatledger.config.settings import Config
from seatledger.config.store import open_ledger

_PR_SET_PDEATHSIG = 1


def run_follower(config: Config, *, poll_seconds: float = 0.2,
                 parent_pid: int | None = None) -> None:
    """Follow the ledger into the read models until SIGTERM/SIGINT or the parent's death."""
    if parent_pid is not None:
        _die_with_parent()
        if os.getppid() != parent_pid:
            return  # the master is gone already: nothing to follow for
    app = open_ledger(config, read_only=True)
    try:
        with ProjectionRunner(app) as runner:
            stopping = threading.Event()

            def stop(*_: object) -> None:
                stopping.set()
                runner.stop_following()

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            if parent_pid is not None:
                _watch_parent(parent_pid, stop)
            while not stopping.is_set():
                # follow() clears the runner's stop flag when it starts; a stop that came
                # before that is kept in ``stopping`` and checked again here.
                runner.follow(poll_seconds=poll_seconds)
    finally:
        app.close()


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _watch_parent(parent: int, stop: Callable[[], None]) -> None:
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        while True:  # keep saying it: a follow() starting now must stop too
            stop()
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="orphan-watch").start()


__all__ = ["run_follower"]
