"""The master's single ledger writer: group commit for every connection, and the operator's
commands in the same queue, so that one process and one task write the store.

Requests from all connections are drained into batches and committed through
:meth:`ledger.LedgerApp.execute` (in a worker thread, so the event loop keeps serving);
each request is answered only after its batch is durable. An operator's command (from the
admin socket) runs alone between batches, in the same task. Commits do not overlap here:
in this process the event loop already runs while a commit waits for the disk, and
deciding the next batch in a third thread only took the interpreter lock from it
(measured). The writer process overlaps them (:mod:`.committer`, ``[master] writer =
"process"``).

When the store cannot be written (a full disk, a database gone: the ledger raises
:class:`~ledger.StoreError` and records nothing of the batch), the writer does not stop: it
answers that batch's requests with :class:`StoreUnavailable`, logs a critical alert, and
from then on answers at once with :class:`StoreUnavailable` until ``retry_interval`` has
passed; the next batch after that is tried for real, and the first that commits ends the
outage. So nothing is acknowledged that is not durable, and the master recovers by itself
when space returns.

A commit refused by its fence (:class:`~ledger.persistence.fencing.FencedError`: a standby
master took the lease) is no outage: this master may not write any more. The writer calls
``on_fenced`` and stops there, answering nothing more, so that the daemon steps down; the
requests it holds were not recorded and are never acknowledged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NoReturn

import attrs
import trio

from ledger import LedgerApp, LedgerError, ManualClock, StoreError, Tick
from ledger.application import FedRow
from ledger.persistence.fencing import FencedError
from seatledger.master.committer import OperatorCall, OperatorFailed, execute_batch
from seatledger.master.ledger_process import LedgerProcess, RemoteCall, WriterDiedError

log = logging.getLogger("seatledger.master")


@attrs.frozen
class StoreUnavailable:
    """A request's outcome when the store could not be written: nothing of it was recorded.
    ``error`` is the store's complaint (e.g. "commit failed: database or disk is full")."""

    error: str


@attrs.frozen
class _Sent:
    """A batch sent to the writer process: per segment, None (its outcomes come from the
    child) or the outcomes it was answered with at once."""

    batch: list[Request]
    outcomes: list[list[Any] | None]
    began: float


@attrs.define
class Request:
    command: Any
    reply: Callable[[Any], None]


class Waiter:
    """A one-shot answer for a request submitted from a trio task that waits for it."""

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: Any = None

    def __call__(self, value: Any) -> None:
        self.value = value
        self.event.set()

    async def wait(self) -> Any:
        await self.event.wait()
        return self.value


class Writer:
    """Owns the request queue and the ledger's commits. Run :meth:`run` in a nursery."""

    def __init__(self, app: LedgerApp, ledger_clock: ManualClock, now: Callable[[], datetime], *,
                 max_batch: int, queue_size: int, worker_thread: bool,
                 after_batch: Callable[[list[Any]], None], retry_interval: float = 5.0,
                 on_fenced: Callable[[FencedError], None] | None = None,
                 process: LedgerProcess | None = None):
        self.app = app
        self.process = process
        """The writer process that commits for this writer, if any (else this process)."""
        self._process_down = False
        self._in_flight = 0
        self.on_fenced = on_fenced
        self.fenced: FencedError | None = None
        """Why this writer stopped writing for good (its lease is gone), once it has."""
        self.ledger_clock = ledger_clock
        self.now = now
        self.max_batch = max_batch
        self.worker_thread = worker_thread
        self.after_batch = after_batch
        self._tx, self._rx = trio.open_memory_channel[Request](queue_size)
        self._lock = trio.Lock()
        self.alive = False
        self.batches = 0
        self.committed = 0
        self.largest_batch = 0
        self.retry_interval = retry_interval
        self.store_error: StoreError | None = None
        """Why the store cannot be written, while it cannot; None while it can."""
        self._retry_at = -math.inf
        self._outage_started = 0.0
        self.outages = 0
        self.unavailable_answers = 0
        self.observer: Callable[[int, float], None] | None = None
        """Called after each batch with its size and the seconds its commit took (metrics)."""
        self._feed: Callable[[list[FedRow]], None] | None = None

    def attach_feed(self, feed: Callable[[list[FedRow]], None]) -> None:
        """Give ``feed`` every record committed from now on, in order, once durable, as the
        seal hashed it (the read models' feed: :mod:`projections.feed`). It must not block;
        it is called from the thread that commits."""
        if self.process is not None:
            self.process.feed = feed
        else:
            self.app.keep_fed = True
            self._feed = feed

    @property
    def available(self) -> bool:
        """False while the store cannot be written (requests are answered StoreUnavailable)."""
        return self.store_error is None

    def statistics(self) -> dict[str, int]:
        return {"batches": self.batches, "committed_requests": self.committed,
                "largest_batch": self.largest_batch,
                "queued": self._rx.statistics().current_buffer_used,
                "store_available": int(self.available), "store_outages": self.outages,
                "store_unavailable_answers": self.unavailable_answers}

    @property
    def queued(self) -> int:
        return self._rx.statistics().current_buffer_used

    def exclusive(self) -> trio.Lock:
        """Hold this (``async with``) to use the ledger while the writer waits."""
        return self._lock

    async def enqueue(self, request: Request) -> None:
        """Queue a request; wait only when the queue is full (that is the backpressure).
        The common case skips a scheduling round trip per request."""
        try:
            self._tx.send_nowait(request)
        except trio.WouldBlock:
            await self._tx.send(request)

    async def submit(self, command: Any) -> Any:
        """Submit one command and wait until it has been committed; returns its outcome."""
        waiter = Waiter()
        await self._tx.send(Request(command, waiter))
        return await waiter.wait()

    async def flush(self) -> None:
        """Wait until every request queued so far is committed."""
        await self.submit(Tick())

    async def run(self) -> None:
        self.alive = True
        try:
            await self._write_batches()
        finally:
            self.alive = False

    async def _gather(self) -> list[Request]:
        """The next batch: at least one request, and all that are queued (up to the cap)."""
        rx = self._rx
        batch = [await rx.receive()]
        while len(batch) < self.max_batch:
            try:
                batch.append(rx.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    def _answer(self, batch: list[Request], outcomes: list[Any], took: float) -> None:
        self.batches += 1
        self.committed += len(batch)
        self.largest_batch = max(self.largest_batch, len(batch))
        for request, outcome in zip(batch, outcomes, strict=True):
            request.reply(outcome)
        if self.observer is not None:
            self.observer(len(batch), took)
        self.after_batch(outcomes)

    async def _write_batches(self) -> None:
        if self.process is not None:
            await self._write_batches_elsewhere(self.process)
            return
        while True:
            batch = await self._gather()
            outcomes: list[Any] = []
            async with self._lock:
                began = time.perf_counter()
                for segment in _segments(batch):
                    outcomes += await self._commit([r.command for r in segment])
                took = time.perf_counter() - began
            self._answer(batch, outcomes, took)

    # ------------------------------------------------------------ in a writer process
    async def _write_batches_elsewhere(self, process: LedgerProcess) -> None:
        """Batches for the writer process, pipelined: the next batch is sent while the
        child commits the one before (it runs them in order, and answers in order), so the
        child never waits for this process to read an answer and apply its events."""
        sent_tx, sent_rx = trio.open_memory_channel[_Sent](1)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_answers, process, sent_rx)
            while True:
                batch = await self._gather()
                if self._process_down:
                    await self._restart(process)
                began = time.perf_counter()
                sent = [await self._send_segment(process, [r.command for r in segment])
                        for segment in _segments(batch)]
                self._in_flight += 1
                await sent_tx.send(_Sent(batch, sent, began))

    async def _send_segment(self, process: LedgerProcess,
                            commands: list[Any]) -> list[Any] | None:
        """Send one segment; None if sent (its outcomes come from the child), else the
        outcomes to answer with at once (the store is known unavailable; the child died)."""
        operator = len(commands) == 1 and isinstance(commands[0], OperatorCall)
        if self.store_error is not None and not operator:
            if trio.current_time() < self._retry_at:
                return self._unavailable(commands, self.store_error)
        if self._process_down:
            return self._unavailable(commands, StoreError("the ledger writer process died"))
        if operator:
            call = commands[0]
            if call.args is None:
                return [OperatorFailed(LedgerError(f"{call.name} cannot be sent to the "
                                                   "ledger writer process"))]
            commands = [RemoteCall(call.name, call.args)]
        self.ledger_clock.set(self.now())
        try:
            await process.send(commands)
        except WriterDiedError as e:
            self._process_died(e, len(commands))
            return self._unavailable(commands, StoreError(str(e)))
        return None

    async def _read_answers(self, process: LedgerProcess,
                            sent_rx: trio.MemoryReceiveChannel[_Sent]) -> None:
        async for sent in sent_rx:
            outcomes: list[Any] = []
            for segment, early in zip(_segments(sent.batch), sent.outcomes, strict=True):
                commands = [r.command for r in segment]
                if early is not None:
                    outcomes += early
                    continue
                operator = len(commands) == 1 and isinstance(commands[0], OperatorCall)
                outcomes += await self._segment_outcomes(process, commands, operator)
            self._in_flight -= 1
            self._answer(sent.batch, outcomes, time.perf_counter() - sent.began)

    async def _segment_outcomes(self, process: LedgerProcess, commands: list[Any],
                                operator: bool) -> list[Any]:
        if self._process_down:  # it died with this segment sent: nothing will answer
            return self._unavailable(commands, StoreError("the ledger writer process died"))
        try:
            return await self._settled(commands, operator, process.outcomes())
        except WriterDiedError as e:
            self._process_died(e, len(commands))
            return self._unavailable(commands, StoreError(str(e)))

    def _process_died(self, error: WriterDiedError, in_flight: int) -> None:
        if not self._process_down:
            log.critical("ALERT: %s with a batch of %d in flight: answered store_unavailable "
                         "(the sites ask again); starting a new writer process",
                         error, in_flight)
        self._process_down = True

    async def _restart(self, process: LedgerProcess) -> None:
        """Start a new writer process once every batch sent to the dead one is answered."""
        while self._in_flight:
            await trio.sleep(0.001)
        try:
            await process.restart()
        except StoreError as e:  # an outage like any other: retried after the interval
            self._store_failed(e)
            return
        self._process_down = False
        log.warning("a new ledger writer process (pid %s) serves", process.pid)

    async def _commit(self, commands: list[Any]) -> list[Any]:
        """Commit one segment; its outcomes, or StoreUnavailable for each if the store
        cannot be written."""
        operator = len(commands) == 1 and isinstance(commands[0], OperatorCall)
        if self.store_error is not None and not operator:
            if trio.current_time() < self._retry_at:
                await trio.lowlevel.checkpoint()
                return self._unavailable(commands, self.store_error)
        self.ledger_clock.set(self.now())
        return await self._settled(commands, operator, self._execute_here(commands))

    async def _execute_here(self, commands: list[Any]) -> list[Any]:
        if self.worker_thread:
            return await trio.to_thread.run_sync(self._execute, commands)
        outcomes = self._execute(commands)
        await trio.lowlevel.checkpoint()
        return outcomes

    async def _settled(self, commands: list[Any], operator: bool,
                       committing: Awaitable[list[Any]]) -> list[Any]:
        """The outcomes ``committing`` gives, or StoreUnavailable for each if the store
        could not be written; a fenced commit stops this writer."""
        try:
            outcomes = await committing
        except FencedError as e:
            await self._stop_fenced(e)
        except StoreError as e:
            self._store_failed(e)
            return self._unavailable(commands, e)
        if self.store_error is not None and not operator:
            self._store_recovered()
        return outcomes

    async def _stop_fenced(self, error: FencedError) -> NoReturn:
        """Another master is active: write nothing more, answer nothing more; wait to be
        cancelled by the daemon stepping down."""
        log.critical("a commit was fenced off (%s): this master steps down", error)
        self.fenced = error
        if self.on_fenced is not None:
            self.on_fenced(error)
        await trio.sleep_forever()

    def _unavailable(self, commands: list[Any], error: StoreError) -> list[Any]:
        self.unavailable_answers += len(commands)
        return [StoreUnavailable(str(error)) for _ in commands]

    def _store_failed(self, error: StoreError) -> None:
        now = trio.current_time()
        if self.store_error is None:
            self.outages += 1
            self._outage_started = now
            log.critical("ALERT: the ledger store cannot be written (%s): refusing grants and "
                         "releases with store_unavailable, retrying every %.0fs",
                         error, self.retry_interval)
        else:
            log.warning("the ledger store still cannot be written: %s", error)
        self.store_error = error
        self._retry_at = now + self.retry_interval

    def _store_recovered(self) -> None:
        log.warning("the ledger store can be written again, after %.0fs",
                    trio.current_time() - self._outage_started)
        self.store_error = None
        self._retry_at = -math.inf

    def _execute(self, commands: list[Any]) -> list[Any]:
        try:
            return execute_batch(self.app, commands)
        finally:  # what was committed, even when a later step failed
            if self._feed is not None:
                self._feed(self.app.take_fed())


def _segments(batch: list[Request]) -> list[list[Request]]:
    """Split a batch so that each operator call is committed alone, in its place."""
    segments: list[list[Request]] = []
    current: list[Request] = []
    for request in batch:
        if isinstance(request.command, OperatorCall):
            if current:
                segments.append(current)
                current = []
            segments.append([request])
        else:
            current.append(request)
    if current:
        segments.append(current)
    return segments


__all__ = ["OperatorCall", "OperatorFailed", "Request", "StoreUnavailable", "Waiter", "Writer",
           "execute_batch"]
