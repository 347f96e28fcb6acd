"""Work on a second core: a forked child that reads the store itself and sends its results
back a chunk at a time (verification's and replay's reading and decrypting).

A child is forked only from a process with no thread but the calling one, counted by the
kernel (a fork copies one thread, and the others' locks with it, held for ever); it opens
its own connection to the SQLite file, never the parent's; it dies with its parent
(``PR_SET_PDEATHSIG``); and it never returns into the parent's code. The parent gives up on
a child that sends nothing for ``patience`` seconds: it kills it and does the rest itself, as
it does when the child fails or stops early. So a child can only save time.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import select
import signal
import sqlite3
import struct
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

SPLIT_ABOVE = 40 * 1024  # fewer records take less time than forking and joining a child
MIN_PATIENCE = 30.0  # seconds the parent waits for a child's next chunk at least
_PR_SET_PDEATHSIG = 1
_LENGTH = struct.Struct(">Q")


def can_fork() -> bool:
    """Whether this process may fork a child: on Linux, with no thread but this one,
    counted by the kernel (threads not started by ``threading`` count too)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def read_only(file: Path) -> sqlite3.Connection:
    """A connection of the child's own to the SQLite ``file``, for reading."""
    return sqlite3.connect(f"file:{quote(str(file))}?mode=ro", uri=True)


class Child:
    """A forked child sending what ``work()`` yields, each pickled, in order.

    :meth:`chunks` hands them out as they come, and ends where the child ended: after its
    last chunk, or early (it failed, or sent nothing for ``patience`` seconds: it is
    killed).
    """

    def __init__(self, work: Callable[[], Iterable[Any]]):
        read, write = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: it must never return into the parent's code
            code = 1
            try:
                os.close(read)
                _die_with(parent)
                with open(write, "wb") as out:
                    for chunk in work():
                        data = pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)
                        out.write(_LENGTH.pack(len(data)) + data)
                code = 0
            finally:
                os._exit(code)
        os.close(write)
        self._pid = pid
        self._from_child = read

    def chunks(self, patience: float = MIN_PATIENCE) -> Iterator[Any]:
        try:
            while (head := self._read(_LENGTH.size, patience)) is not None:
                data = self._read(_LENGTH.unpack(head)[0], patience)
                if data is None:
                    return
                yield pickle.loads(data)
        finally:
            self.close()

    def _read(self, size: int, patience: float) -> bytes | None:
        """The next ``size`` bytes from the child; None at its end, or once it sent nothing
        for ``patience`` seconds."""
        parts: list[bytes] = []
        while size and self._from_child >= 0:
            if not select.select([self._from_child], [], [], patience)[0]:
                return None
            part = os.read(self._from_child, min(size, 1 << 20))
            if not part:
                return None
            parts.append(part)
            size -= len(part)
        return b"".join(parts) if not size else None

    def close(self) -> None:
        """Stop the child if it still runs, and reap it."""
        if self._from_child >= 0:
            os.close(self._from_child)
            self._from_child = -1
        if self._pid:
            os.kill(self._pid, signal.SIGKILL)
            os.waitpid(self._pid, 0)
            self._pid = 0


def _die_with(parent: int) -> None:
    """Have the kernel kill this (child) process when its parent dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before that took effect
        os._exit(1)


__all__ = ["MIN_PATIENCE", "SPLIT_ABOVE", "Child", "can_fork", "read_only"]
