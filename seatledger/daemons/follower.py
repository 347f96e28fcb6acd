"""The read-model follower: ``seatledger projections follow``, a child process of the master.

It must end with its master, even a SIGKILLed one (:mod:`seatledger.daemons.orphans`).
"""

from __future__ import annotations

import os
import signal

from projections import ProjectionRunner
from projections.feed import FeedReceiver
from seatledger.config.settings import Config
from seatledger.config.store import open_ledger
from seatledger.daemons.orphans import die_with_parent, watch_parent

FOLLOWER_NICENESS = 10
"""How much the master's follower defers to it for the CPU: on a small machine its bursts
(every commit's rows applied at once, every 0.1 s) would otherwise take a core from the
master's event loop or its writer just when a batch is on its way, and an answer waits. The
views only lag more while the master is busy; a feed message with no room is dropped and
read from the store instead, so nothing is lost."""


def run_follower(config: Config, *, poll_seconds: float = 0.2,
                 parent_pid: int | None = None, feed_fd: int | None = None) -> None:
    """Follow the ledger into the read models until SIGTERM/SIGINT or the parent's death;
    fed each commit on ``feed_fd`` by the master's writer, if given (:mod:`projections.feed`)."""
    if parent_pid is not None:
        die_with_parent()
        if os.getppid() != parent_pid:
            return  # the master is gone already: nothing to follow for
        os.nice(FOLLOWER_NICENESS)
    feed = FeedReceiver(feed_fd) if feed_fd is not None else None
    app = open_ledger(config, read_only=True)
    try:
        with ProjectionRunner(app) as runner:
            stopping = False

            def stop(wake: bool) -> None:
                nonlocal stopping
                stopping = True
                runner.stop_following(wake=wake)

            # A signal handler takes no lock: a second signal landing while the first
            # one's handler held one would wait for itself (SIGTERM from the kernel when
            # the master dies, then from its supervisor), and the follower would never end.
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop(wake=False))
            if parent_pid is not None:
                watch_parent(parent_pid, lambda: stop(wake=True))
            while not stopping:
                # follow() clears the runner's stop flag when it starts; a stop that came
                # before that is kept in ``stopping`` and checked again here.
                runner.follow(poll_seconds=poll_seconds, feed=feed)
    finally:
        app.close()
        if feed is not None:
            feed.close()


__all__ = ["run_follower"]
