"""The ledger's writer in a process of its own (issue 12).

The master's event loop only moves bytes; deciding, encoding, encrypting, sealing and
committing a batch run in a child process, on the second core, at in-process speed (no
worker thread competing with the event loop for the interpreter lock). The master stays one
command and one service: the child is started by it, dies with it (``PR_SET_PDEATHSIG``
and a watch on its parent), and is restarted by it.

Each batch goes over a socketpair as one frame (a length, then a pickle): the commands, and
the ledger time the master read for them (the master owns ledger time, so trio's clock,
MockClock in tests, drives the whole master). The child answers with the outcomes and the
records it committed, as stored (encrypted: decoding them costs the master less than
unpickling events); the master decodes and applies them to its own copy of the licence
(:meth:`ledger.LedgerApp.absorb`), which every read in the master uses (sessions, the timer,
the alerts, the dashboard). Only then are the requests answered: no acknowledgement leaves
before its batch is durable.

When the child dies the batch in flight is answered ``store_unavailable`` (it may or may not
have been committed: a slave asks again, and a repeated grant is the same seat, a repeated
release ``unknown_seat``), a critical alert is logged, and a new child is started; the
master's copy is reloaded from the store, so every acknowledged grant is there, once.

Frames are pickles between a process and the child it started, over a private socketpair:
nothing from outside is ever unpickled.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import socket
import struct
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from ledger import LedgerApp, StoreError
from ledger.application import FedRow
from ledger.persistence.fencing import FencedError

log = logging.getLogger("seatledger.master")

_LENGTH = struct.Struct("!I")
READY_TIMEOUT = 120.0
"""Seconds a new writer process may take to open the ledger (a large store's replay)."""


@attrs.frozen
class RemoteCall:
    """An operator's command, or the daily export, by name, for the writer process."""

    name: str
    args: dict[str, Any]


class WriterDiedError(Exception):
    """The writer process ended without answering."""


def encode_frame(value: Any) -> bytes:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def take_frame(buffer: bytearray) -> tuple[bool, Any]:
    """(True, value) for the frame at the start of ``buffer``, removed from it; (False,
    None) while it is not all there."""
    if len(buffer) >= _LENGTH.size:
        end = _LENGTH.size + _LENGTH.unpack_from(buffer)[0]
        if len(buffer) >= end:
            with memoryview(buffer) as view, view[_LENGTH.size:end] as body:
                value = pickle.loads(body)
            del buffer[:end]
            return True, value
    return False, None


class FrameReader:
    """Frames from a blocking socket (the child's side), read in large pieces: one
    ``recv`` usually brings a whole frame, often more."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()

    def arrived(self) -> bool:
        """Whether the next frame has begun to arrive (so :meth:`read` will not wait for
        the master to send one)."""
        if self._buffer:
            return True
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def read(self) -> Any:
        """The next frame's value. Raises EOFError at the end."""
        buffer = self._buffer
        while True:
            whole, value = take_frame(buffer)
            if whole:
                return value
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("the master closed the writer's socket")
            buffer += chunk


class LedgerProcess:
    """The master's side of its writer process. ``command`` starts the child; it is given
    ``--fd N`` (its end of the socketpair) and ``--parent-pid``."""

    def __init__(self, command: Sequence[str], app: LedgerApp) -> None:
        self.command = list(command)
        self.app = app
        self._proc: subprocess.Popen[bytes] | None = None
        self._stream: trio.SocketStream | None = None
        self._buffer = bytearray()
        self._socket: socket.socket | None = None
        self.feed: Callable[[list[FedRow]], None] | None = None
        """Given each batch's committed records (see Writer.attach_feed)."""
        app.writes_elsewhere = True

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def spawn(self) -> None:
        """Start the child now, without waiting for it (it opens the ledger meanwhile: a
        master spawns it first thing, and :meth:`start` then waits less)."""
        if self._proc is not None:
            return
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [*self.command, "--fd", str(theirs.fileno()), "--parent-pid", str(os.getpid())],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self._socket = ours

    async def start(self) -> None:
        """Start the child (unless :meth:`spawn` did) and wait until it has opened the
        ledger.

        Raises:
            StoreError: it could not open the ledger (its one-line reason), or did not say
                so within :data:`READY_TIMEOUT`.
        """
        self.spawn()
        assert self._socket is not None
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(self._socket))
        self._buffer.clear()
        try:
            with trio.fail_after(READY_TIMEOUT):
                ready = await self._receive()
        except (WriterDiedError, trio.TooSlowError) as e:
            await self._reap()
            raise StoreError(f"the ledger writer process did not start: {e}") from None
        if ready[0] != "ready":
            await self._reap()
            raise StoreError(f"the ledger writer process could not open the ledger: {ready[1]}")
        if ready[1] is not None:
            self.app.adopt(ready[1])  # the child's licence, as it loaded it

    async def execute(self, commands: list[Any]) -> list[Any]:
        """Run one batch in the child; its outcomes, once it is durable.

        Raises:
            StoreError: the store could not be written (nothing of the batch was recorded).
            FencedError: another master holds the lease.
            WriterDiedError: the child ended; :meth:`restart` it.
        """
        await self.send(commands)
        return await self.outcomes()

    async def send(self, commands: list[Any]) -> None:
        """Send one batch, in the ledger time read now; :meth:`outcomes` reads its answer.
        Batches may be sent ahead: the child runs them in order, and answers in order.

        Raises:
            WriterDiedError: the child has ended.
        """
        app = self.app
        recorded, step = app.timekeeper.read(app.licence.modified_on)
        if step is not None:
            app.note_clock_step(step)
        await self._send(("batch", recorded, step, commands))

    async def outcomes(self) -> list[Any]:
        """The outcomes of the oldest batch sent and not yet answered, once it is durable;
        the master's copy has its events then. Raises as :meth:`execute`."""
        app = self.app
        reply = await self._receive()
        match reply:
            case ("done", outcomes, records, reloaded):
                if reloaded:  # the child caught up with another process's commit
                    app.reload()
                else:
                    try:
                        app.absorb(records)
                    except StoreError as e:  # committed all the same: read the store
                        log.warning("%s: reloading the licence", e)
                        app.reload()
                if self.feed is not None:
                    self.feed(records)
                return list(outcomes)
            case ("failed", error):
                raise StoreError(error)
            case ("fenced", error):
                raise FencedError(error)
        raise WriterDiedError(f"the ledger writer process answered {reply[0]!r}")

    async def restart(self) -> None:
        """After the child died: reap it, start another; the master's copy is reloaded."""
        await self._reap()
        await self.start()  # the master's copy is the new child's, as it loaded it

    async def aclose(self) -> None:
        """Ask the child to seal its tail and close the ledger; wait for it to end."""
        if self._proc is None:
            return
        try:
            with trio.move_on_after(30):
                await self._send(("close",))
                await self._receive()
        except WriterDiedError:
            pass  # gone already: nothing left to close
        await self._reap()

    async def _send(self, value: Any) -> None:
        assert self._stream is not None
        try:
            await self._stream.send_all(encode_frame(value))
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            raise WriterDiedError(self._exit_text()) from e

    async def _receive(self) -> Any:
        assert self._stream is not None
        buffer = self._buffer
        while True:
            whole, value = take_frame(buffer)
            if whole:
                return value
            try:
                data = await self._stream.receive_some(1 << 20)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
                raise WriterDiedError(self._exit_text()) from e
            if not data:
                raise WriterDiedError(self._exit_text())
            buffer += data

    def _exit_text(self) -> str:
        proc = self._proc
        code = proc.poll() if proc is not None else None
        return ("the ledger writer process ended" +
                (f" (exit status {code})" if code is not None else ""))

    async def _reap(self) -> None:
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)
            self._stream = None
        elif self._socket is not None:
            self._socket.close()
        self._socket = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with trio.move_on_after(10):
            while proc.poll() is None:
                await trio.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            await trio.to_thread.run_sync(proc.wait)


__all__ = ["READY_TIMEOUT", "FrameReader", "LedgerProcess", "RemoteCall", "WriterDiedError",
           "encode_frame"]
