"""The sink port and the delivery rules every sink shares.

Theory of operation: a concrete sink only knows how to open a :class:`SinkSession`, which
offers six primitives on one folder (size, read, write, rename, remove, close/abort). Everything
that makes a delivery safe lives here, once, on top of those primitives:

* **Never a partial file under the final name.** Data is written under a hidden temporary
  name in the same folder, its size is checked, and only then renamed. A failure removes the
  temporary file when the connection still allows it.
* **Idempotent.** If the final name exists with the same size and SHA-256 (downloaded and
  hashed), nothing is written and the result says so; with other content we raise
  :class:`RemoteConflictError` and never overwrite. The check runs again just before the
  rename, so a file that appeared meanwhile is not replaced either.
* **Retried.** Each attempt opens a fresh session; only :class:`SinkUnavailableError`
  (connection refused, dropped, timed out, a 4xx FTP reply) is retried, after delays that
  grow exponentially. Everything else (host key, credentials, conflicts) fails at once.

Session implementations translate their library's errors: transient ones into
:class:`SinkUnavailableError`, the rest into another :class:`SinkError`.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import TypeVar

import attrs

from ..errors import RemoteConflictError, RemoteMissingError, SinkError, SinkUnavailableError

__all__ = [
    "CHUNK_SIZE",
    "RetryPolicy",
    "Sink",
    "SinkSession",
    "UploadResult",
    "UploadStatus",
    "check_name",
]

#: Size of the pieces handed to :meth:`SinkSession.write`.
CHUNK_SIZE = 256 * 1024

_T = TypeVar("_T")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}")


def check_name(name: str) -> str:
    """Return ``name`` if it is a plain file name a sink accepts.

    Letters, digits, ``_ . + -``; not starting with a dot (hidden names are our temporaries);
    no separators or line breaks, which would escape the folder or an FTP command.

    Raises:
        ValueError: any other name.
    """
    if not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"not a plain export file name: {name!r}")
    return name


class UploadStatus(enum.Enum):
    """What :meth:`Sink.upload` did."""

    UPLOADED = "uploaded"
    ALREADY_PRESENT = "already present"


@attrs.frozen
class UploadResult:
    """The outcome of delivering one file."""

    name: str
    size: int
    sha256: str
    status: UploadStatus


@attrs.frozen
class RetryPolicy:
    """How often to try and how long to wait between tries.

    The delay before retry ``n`` (1-based) is ``first_delay * multiplier ** (n - 1)``, capped at
    ``max_delay``. ``sleep`` is injectable so tests record delays instead of waiting.
    """

    attempts: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    first_delay: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))
    multiplier: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    max_delay: float = attrs.field(default=60.0, validator=attrs.validators.ge(0))
    sleep: Callable[[float], None] = attrs.field(default=time.sleep, eq=False)

    def delays(self) -> list[float]:
        """The waits between attempts: ``attempts - 1`` of them."""
        return [
            min(self.first_delay * self.multiplier**n, self.max_delay)
            for n in range(self.attempts - 1)
        ]


class SinkSession(ABC):
    """One connection to a sink's folder: the primitives a transport implements.

    Names are plain file names inside the configured folder. Implementations raise
    :class:`SinkUnavailableError` for transient failures and another :class:`SinkError` for
    permanent ones; :meth:`close` and :meth:`abort` never raise.
    """

    @abstractmethod
    def size(self, name: str) -> int | None:
        """The file's size in bytes, or ``None`` if it does not exist."""

    @abstractmethod
    def read(self, name: str) -> bytes:
        """The file's whole content."""

    @abstractmethod
    def write(self, name: str, chunks: Iterable[bytes]) -> None:
        """Create (or truncate) the file and write the chunks to it, in order."""

    @abstractmethod
    def rename(self, source: str, target: str) -> None:
        """Rename within the folder. Callers ensure ``target`` does not exist."""

    @abstractmethod
    def remove(self, name: str) -> None:
        """Delete the file."""

    @abstractmethod
    def close(self) -> None:
        """End the session politely if possible. Never raises."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the connection at once, without a goodbye; later calls fail as unavailable.
        Never raises."""

    def __enter__(self) -> SinkSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Sink(ABC):
    """A place export files are delivered to (the port). Subclasses say how to connect."""

    def __init__(self, *, retry: RetryPolicy | None = None) -> None:
        self.retry = retry if retry is not None else RetryPolicy()

    @property
    @abstractmethod
    def description(self) -> str:
        """Where this sink points, for messages: ``sftp://user@host:22/dir``. No secrets."""

    @abstractmethod
    def connect(self) -> SinkSession:
        """Open a session.

        Raises:
            SinkUnavailableError: cannot reach the server (retried by the callers here).
            SinkError: a permanent refusal (host key, certificate, credentials).
        """

    def exists(self, name: str) -> bool:
        """Whether ``name`` exists on the sink. Retried like an upload."""
        check_name(name)
        return self._retrying(lambda session: session.size(name) is not None)

    def fetch(self, name: str) -> bytes:
        """Download ``name``. Retried like an upload.

        Raises:
            RemoteMissingError: no such file.
        """
        check_name(name)

        def fetch_once(session: SinkSession) -> bytes:
            if session.size(name) is None:
                raise RemoteMissingError(f"{self.description}: {name} does not exist")
            return session.read(name)

        return self._retrying(fetch_once)

    def upload(self, name: str, data: bytes) -> UploadResult:
        """Deliver ``data`` as ``name`` (see the module notes for the guarantees).

        Raises:
            RemoteConflictError: ``name`` exists with other content.
            SinkUnavailableError: still unreachable after the last attempt.
            SinkError: any other refusal.
        """
        return self.upload_all([(name, data)])[0]

    def upload_all(self, files: Iterable[tuple[str, bytes]]) -> list[UploadResult]:
        """Deliver several files in order over one session per attempt.

        A retry skips the files an earlier attempt finished. Raises as :meth:`upload`; files
        delivered before a failure stay delivered.
        """
        pending = [(check_name(name), data) for name, data in files]
        done: dict[str, UploadResult] = {}

        def upload_pending(session: SinkSession) -> None:
            for name, data in pending:
                if name not in done:
                    done[name] = self._deliver(session, name, data)

        self._retrying(upload_pending)
        return [done[name] for name, _ in pending]

    def _retrying(self, operation: Callable[[SinkSession], _T]) -> _T:
        delays = iter(self.retry.delays())
        for attempt in range(1, self.retry.attempts + 1):
            try:
                with self.connect() as session:
                    return operation(session)
            except SinkUnavailableError as err:
                delay = next(delays, None)
                if delay is None:
                    raise SinkUnavailableError(
                        f"gave up after {attempt} attempt{'s' if attempt > 1 else ''}: {err}"
                    ) from err
                self.retry.sleep(delay)
        raise AssertionError("unreachable: RetryPolicy.attempts >= 1")

    def _deliver(self, session: SinkSession, name: str, data: bytes) -> UploadResult:
        digest = hashlib.sha256(data).hexdigest()
        present = UploadResult(name, len(data), digest, UploadStatus.ALREADY_PRESENT)
        if self._holds_same(session, name, data, digest):
            return present
        temporary = f".{name}.{secrets.token_hex(6)}.part"
        try:
            session.write(temporary, _chunks(data))
            written = session.size(temporary)
            if written != len(data):
                raise SinkUnavailableError(
                    f"{self.description}: transfer of {name} incomplete "
                    f"({written} of {len(data)} bytes arrived)"
                )
            if self._holds_same(session, name, data, digest):
                session.remove(temporary)
                return present
            session.rename(temporary, name)
        except BaseException:
            _discard(session, temporary)
            raise
        return UploadResult(name, len(data), digest, UploadStatus.UPLOADED)

    def _holds_same(self, session: SinkSession, name: str, data: bytes, digest: str) -> bool:
        """True if ``name`` holds ``data``; False if absent; RemoteConflictError otherwise."""
        size = session.size(name)
        if size is None:
            return False
        remote_digest = None
        if size == len(data):
            remote_digest = hashlib.sha256(session.read(name)).hexdigest()
            if remote_digest == digest:
                return True
        theirs = f"sha256 {remote_digest[:16]}" if remote_digest else f"{size} bytes"
        raise RemoteConflictError(
            f"{self.description}: {name} already exists with other content "
            f"({theirs}, ours sha256 {digest[:16]} / {len(data)} bytes); not overwriting",
            name=name,
            local_sha256=digest,
            remote_sha256=remote_digest,
        )


def _chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK_SIZE):
        yield data[start : start + CHUNK_SIZE]


def _discard(session: SinkSession, name: str) -> None:
    """Best-effort removal of a temporary file; the original error is the one that matters."""
    try:
        if session.size(name) is not None:
            session.remove(name)
    except SinkError:
        pass
