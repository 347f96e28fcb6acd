"""An in-memory sink: the fake for unit tests of code that delivers exports.

It goes through the same :class:`Sink` rules as the real sinks (temporary names, conflict
checks, retries). ``unavailable_connects`` makes the first N connections fail as a down
server would.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import SinkError, SinkUnavailableError
from .base import RetryPolicy, Sink, SinkSession

__all__ = ["MemorySink"]


class MemorySink(Sink):
    """Files live in :attr:`files` (final and temporary names alike)."""

    def __init__(
        self,
        files: dict[str, bytes] | None = None,
        *,
        unavailable_connects: int = 0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(retry=retry)
        self.files: dict[str, bytes] = files if files is not None else {}
        self.unavailable_connects = unavailable_connects
        self.connects = 0

    @property
    def description(self) -> str:
        return "memory://"

    def connect(self) -> SinkSession:
        self.connects += 1
        if self.connects <= self.unavailable_connects:
            raise SinkUnavailableError(f"{self.description}: connection refused (simulated)")
        return _MemorySession(self.files)


class _MemorySession(SinkSession):
    def __init__(self, files: dict[str, bytes]) -> None:
        self._files = files
        self._aborted = False

    def _check(self) -> None:
        if self._aborted:
            raise SinkUnavailableError("memory://: session was aborted")

    def size(self, name: str) -> int | None:
        self._check()
        data = self._files.get(name)
        return None if data is None else len(data)

    def read(self, name: str) -> bytes:
        self._check()
        try:
            return self._files[name]
        except KeyError:
            raise SinkError(f"memory://: read {name}: no such file") from None

    def write(self, name: str, chunks: Iterable[bytes]) -> None:
        self._check()
        # Grows as chunks arrive, so an interrupted write leaves a partial file, as on disk.
        self._files[name] = b""
        for chunk in chunks:
            self._files[name] += chunk

    def rename(self, source: str, target: str) -> None:
        self._check()
        self._files[target] = self._files.pop(source)

    def remove(self, name: str) -> None:
        self._check()
        self._files.pop(name, None)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        self._aborted = True
