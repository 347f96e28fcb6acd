"""The one place that decides what a daemon restarts: a child process kept running with
exponential backoff and a limit, its state reported through ``status``.

Trio style: a failure of the supervisor's own machinery propagates to the daemon's nursery;
only the child's exit is handled here, and only by restarting it or giving up.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
from collections.abc import Callable, Sequence

import attrs
import trio

log = logging.getLogger("seatledger.supervisor")


class ChildState(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKING_OFF = "backing_off"
    GAVE_UP = "gave_up"
    STOPPED = "stopped"


@attrs.frozen
class RestartPolicy:
    """Restart after ``first_delay`` seconds, doubling up to ``max_delay``; give up after
    ``max_restarts`` restarts within ``window`` seconds of each other."""

    first_delay: float = 1.0
    max_delay: float = 60.0
    max_restarts: int = 5
    window: float = 600.0


@attrs.define
class ChildStatus:
    name: str
    state: ChildState = ChildState.STARTING
    pid: int | None = None
    restarts: int = 0
    last_exit: int | None = None
    next_delay: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "state": str(self.state), "pid": self.pid,
                "restarts": self.restarts, "last_exit": self.last_exit}


class Supervisor:
    """Keeps one child process running: ``await supervisor.run()`` in the daemon's nursery.

    When the daemon is cancelled the child gets SIGTERM, then SIGKILL after a grace period.
    """

    def __init__(self, name: str, command: Sequence[str], *,
                 policy: RestartPolicy = RestartPolicy(), stop_grace: float = 5.0,
                 on_change: Callable[[ChildStatus], None] | None = None,
                 prepare: Callable[[], tuple[list[str], list[int]]] | None = None):
        self.command = list(command)
        self.prepare = prepare
        """Called before each start: arguments to add and descriptors to pass to the child
        (closed here once it has started)."""
        self.on_change = on_change
        self.policy = policy
        self.stop_grace = stop_grace
        self.status = ChildStatus(name)
        self._recent: list[float] = []

    def statistics(self) -> ChildStatus:
        return self.status

    def _set(self, state: ChildState) -> None:
        self.status.state = state
        if self.on_change is not None:
            self.on_change(self.status)

    async def run(self) -> None:
        """Run, restart and finally give up (returns) according to the policy."""
        delay = self.policy.first_delay
        while True:
            code = await self._run_once()
            self.status.last_exit = code
            now = trio.current_time()
            self._recent = [t for t in self._recent if now - t < self.policy.window] + [now]
            if len(self._recent) > self.policy.max_restarts:
                self.status.pid = None
                self._set(ChildState.GAVE_UP)
                log.error("%s exited with %s; gave up after %d restarts",
                          self.status.name, code, self.status.restarts)
                return
            self.status.next_delay = delay
            self._set(ChildState.BACKING_OFF)
            log.error("%s exited with %s; restarting in %.0f s", self.status.name, code, delay)
            await trio.sleep(delay)
            delay = min(delay * 2, self.policy.max_delay)
            self.status.restarts += 1

    async def _run_once(self) -> int:
        command, fds = self.command, list[int]()
        if self.prepare is not None:
            extra, fds = self.prepare()
            command = command + extra
        try:
            process = await trio.lowlevel.open_process(command, pass_fds=fds)
        finally:
            for fd in fds:
                os.close(fd)
        self.status.pid = process.pid
        self._set(ChildState.RUNNING)
        try:
            return await process.wait()
        finally:
            if process.returncode is None:
                with trio.CancelScope(shield=True):
                    process.send_signal(signal.SIGTERM)
                    with trio.move_on_after(self.stop_grace):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                self._set(ChildState.STOPPED)


__all__ = ["ChildState", "ChildStatus", "RestartPolicy", "Supervisor"]
