"""Running batches against the ledger, in the thread or process that writes it: one segment
from decision to commit (:func:`execute_batch`), or overlapped (:class:`Committer`: the next
batch decided while the one before is made durable). Used by the master's writer thread
(:class:`~seatledger.master.writer.Writer`) and by the writer process
(:mod:`seatledger.daemons.ledger_writer`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs

from ledger import LedgerApp, LedgerError, StoreError
from ledger.application import Staged
from ledger.persistence.fencing import FencedError
from seatledger.master.ledger_process import RemoteCall


@attrs.frozen
class OperatorCall:
    """An operator's command: ``run(app)`` executes it against the ledger; its result, or the
    LedgerError it raised, is the request's outcome. ``args``: the command by name and
    arguments, for a writer process (which is sent ``name`` and ``args``, not ``run``)."""

    name: str
    run: Callable[[LedgerApp], Any]
    args: dict[str, Any] | None = None


@attrs.frozen
class OperatorFailed:
    error: LedgerError


def execute_batch(app: LedgerApp, commands: list[Any],
                  operations: Callable[[LedgerApp, str, dict[str, Any]], Any] | None = None
                  ) -> list[Any]:
    """Decide and commit one segment of a batch (a run of seat commands, or one operator's
    call) in this process: the writer thread's work, and the writer process's.
    ``operations`` runs a :class:`RemoteCall` (in the writer process)."""
    if len(commands) == 1 and isinstance(commands[0], OperatorCall | RemoteCall):
        call = commands[0]
        try:
            if isinstance(call, RemoteCall):
                if operations is None:
                    raise LedgerError(f"no operation {call.name!r} here")
                return [operations(app, call.name, call.args)]
            return [call.run(app)]
        except FencedError:
            raise  # not the operator's failure: this master may no longer write
        except LedgerError as e:  # refused before anything was recorded
            return [OperatorFailed(e)]
    if not app.has_licence:
        # A failed commit could not even reload the licence (the store is unreadable
        # too): nothing can be decided until a later batch finds the store again.
        raise StoreError("the store could not be read back after a failed commit")
    app.refresh()
    try:
        return app.execute(commands)
    except FencedError:
        raise  # not a race with another process of ours: the lease is gone
    except StoreError:
        # Another process committed between our refresh and our commit (a store shared
        # with an older tool). Nothing of this batch was recorded and the ledger has
        # reloaded: decide the batch again on the new state. A second failure is real:
        # the store cannot be written (see _commit).
        app.refresh()
        return app.execute(commands)


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
        seats = app.has_licence and not any(isinstance(c, RemoteCall | OperatorCall)
                                            for c in commands)
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


__all__ = ["Committer", "OperatorCall", "OperatorFailed", "execute_batch"]
