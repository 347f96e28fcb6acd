"""The data directory's lock: one writer at a time.

A master holds it for as long as it runs; an operator command that finds no master holds
it while it writes the store directly. ``flock`` locks go with their process, so a killed
master leaves nothing to clean up.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType


class DataDirBusyError(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, directory: Path, holder: str):
        super().__init__(f"{directory} is in use by {holder}")
        self.holder = holder


class DataDirLock:
    """``with DataDirLock(path, "master"):`` or :meth:`acquire` / :meth:`release`."""

    def __init__(self, path: Path, role: str, *, directory: Path | None = None):
        """``directory``: what the lock protects, as errors name it (default: its folder)."""
        self.path = path
        self.role = role
        self.directory = directory or path.parent
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now, or raise DataDirBusyError naming who holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise DataDirBusyError(self.directory, holder) from None
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{self.role} (pid {os.getpid()})\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, only its label is missing

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def master_holder(path: Path) -> str | None:
    """Who holds the lock now (e.g. ``master (pid 123)``), or None if nobody does."""
    lock = DataDirLock(path, "probe")
    try:
        lock.acquire()
    except DataDirBusyError as e:
        return e.holder
    lock.release()
    return None


__all__ = ["DataDirBusyError", "DataDirLock", "master_holder"]
