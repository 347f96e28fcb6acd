"""A sink that is a folder on this machine (or a mounted share)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SinkError, SinkUnavailableError
from .base import RetryPolicy, Sink, SinkSession

__all__ = ["LocalSink"]

# A share that is not mounted or went stale looks like these; retrying may help.
_TRANSIENT_ERRNOS = {errno.ENOENT, errno.ESTALE, errno.EIO, errno.ETIMEDOUT, errno.EAGAIN}


class LocalSink(Sink):
    """Deliver into ``directory``: temporary file, fsync, rename, fsync of the folder."""

    def __init__(self, directory: Path, *, retry: RetryPolicy | None = None) -> None:
        super().__init__(retry=retry)
        self.directory = Path(directory)

    @property
    def description(self) -> str:
        return f"file://{self.directory}"

    def connect(self) -> SinkSession:
        if not self.directory.is_dir():
            raise SinkUnavailableError(f"{self.description}: folder does not exist")
        return _LocalSession(self.directory, self.description)


class _LocalSession(SinkSession):
    def __init__(self, directory: Path, description: str) -> None:
        self._directory = directory
        self._description = description
        self._aborted = False

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        if self._aborted:
            raise SinkUnavailableError(f"{self._description}: session was aborted")
        try:
            yield
        except OSError as err:
            message = f"{self._description}: {action}: {err.strerror or err}"
            if err.errno in _TRANSIENT_ERRNOS:
                raise SinkUnavailableError(message) from err
            raise SinkError(message) from err

    def size(self, name: str) -> int | None:
        with self._errors(f"stat {name}"):
            try:
                return (self._directory / name).stat().st_size
            except FileNotFoundError:
                if not self._directory.is_dir():
                    raise
                return None

    def read(self, name: str) -> bytes:
        with self._errors(f"read {name}"):
            return (self._directory / name).read_bytes()

    def write(self, name: str, chunks: Iterable[bytes]) -> None:
        with self._errors(f"write {name}"):
            fd = os.open(self._directory / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            with os.fdopen(fd, "wb") as file:
                for chunk in chunks:
                    file.write(chunk)
                file.flush()
                os.fsync(file.fileno())

    def rename(self, source: str, target: str) -> None:
        with self._errors(f"rename {source} to {target}"):
            os.rename(self._directory / source, self._directory / target)
            # The rename itself is only durable once the folder's entry is on disk.
            fd = os.open(self._directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def remove(self, name: str) -> None:
        with self._errors(f"remove {name}"):
            (self._directory / name).unlink()

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self._aborted = True
