"""The writer's feed to the read models: each commit's records, as the seal hashed them.

The ledger writer (:attr:`ledger.LedgerApp.keep_fed`) keeps every committed record's
plaintext payload, which it had in hand to encrypt and seal it. The master sends them, a
commit at a time, to its read-model follower over a socket pair of its own making
(``SOCK_SEQPACKET``: a message arrives whole or not at all), so that the follower decodes
them without reading the store and decrypting them again (:meth:`ProjectionRunner.follow`).

The feed is a shortcut, never the truth. A message the socket has no room for is dropped
(the master never waits for its follower); the follower notices the gap in record ids, or
the feed's silence, and reads the store from its position, as it does without a feed. On a
store whose ids have gaps (PostgreSQL) the feed tells the follower only that something was
committed: it reads the store then.

A message: msgpack ``[contiguous, [[id, originator (16 bytes), version, topic, payload],
...]]``, at most :data:`MESSAGE_BYTES` of rows (a larger commit is split, in order).
"""

from __future__ import annotations

import select
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from ledger.application import FedRow

MESSAGE_BYTES = 64 * 1024
"""Rows per message, at most about this many bytes (the socket buffers several)."""
BUFFER_BYTES = 4 * 1024 * 1024
"""Each end's socket buffer: commits the follower has not yet read wait here."""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(tuple[bool, list[tuple[int, bytes, int, str, bytes]]]).decode


def messages(rows: Sequence[FedRow], contiguous: bool) -> list[bytes]:
    """The feed's messages for one commit's rows, in order."""
    out: list[bytes] = []
    chunk: list[tuple[int, bytes, int, str, bytes]] = []
    size = 0
    for record_id, oid, version, topic, payload in rows:
        chunk.append((record_id, oid.bytes, version, topic, payload))
        size += len(payload) + len(topic) + 32
        if size >= MESSAGE_BYTES:
            out.append(_encode((contiguous, chunk)))
            chunk, size = [], 0
    if chunk:
        out.append(_encode((contiguous, chunk)))
    return out


class FeedSender:
    """The master's end: :meth:`connect` makes a new pair for each follower it starts and
    gives the follower's end; :meth:`send` never blocks. Thread-safe enough for one
    sending thread while another reconnects (a send on a replaced socket is counted lost)."""

    def __init__(self, contiguous: bool = True) -> None:
        self.contiguous = contiguous
        self._sock: socket.socket | None = None
        self.sent = 0
        self.lost = 0

    def connect(self) -> int:
        """A new pair; returns the follower's end (inheritable: the caller passes it to the
        follower's process and closes it here once the process has started)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for end in (ours, theirs):
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUFFER_BYTES)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFFER_BYTES)
        ours.setblocking(False)
        ours.shutdown(socket.SHUT_RD)
        theirs.set_inheritable(True)
        old, self._sock = self._sock, ours
        if old is not None:
            old.close()
        return theirs.detach()

    def send(self, rows: Sequence[FedRow]) -> None:
        """Offer one commit's rows to the follower; dropped if it has no room."""
        sock = self._sock
        if not rows or sock is None:
            return
        for message in messages(rows, self.contiguous):
            try:
                sock.send(message)
            except OSError:  # no room (BlockingIOError), no follower, or replaced
                self.lost += 1
                return  # the rest would follow a gap: the follower reads the store
            self.sent += 1

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


class FeedReceiver:
    """The follower's end, from the descriptor its master gave it."""

    def __init__(self, fd: int) -> None:
        self._sock = socket.socket(fileno=fd)
        self._sock.setblocking(False)
        self.closed = False

    def wait(self, timeout: float) -> bool:
        """Block until a message is there (True) or ``timeout`` seconds pass (False)."""
        if self.closed:
            return False
        ready, _, _ = select.select([self._sock], [], [], timeout)
        return bool(ready)

    def drain(self) -> tuple[bool, list[tuple[int, bytes, int, str, bytes]]]:
        """Every message there now, rows in order: (all of them from a store with
        contiguous ids, rows). A message that cannot be read is skipped (the follower finds
        the gap); a closed feed stays silent from then on."""
        contiguous, rows = True, []
        while True:
            try:
                data = self._sock.recv(BUFFER_BYTES)
            except BlockingIOError:
                break
            except OSError:
                self.closed = True
                break
            if not data:  # the master's end is gone
                self.closed = True
                break
            try:
                flag, chunk = _decode(data)
            except msgspec.DecodeError:
                contiguous = False
                continue
            contiguous = contiguous and flag
            rows += chunk
        return contiguous, rows

    def close(self) -> None:
        self._sock.close()


def follows(rows: Iterable[tuple[int, Any, Any, Any, Any]], after: int) -> bool:
    """Whether ``rows`` are the records ``after + 1, after + 2, ...`` with none missing."""
    expected = after + 1
    for row in rows:
        if row[0] != expected:
            return False
        expected += 1
    return True


__all__ = ["BUFFER_BYTES", "MESSAGE_BYTES", "FeedReceiver", "FeedSender", "follows", "messages"]
