"""TLS over a trio socket with nothing between the socket and the ``ssl.SSLObject``: the
master's side of every site's connection (issue 12).

:class:`TLSStream` is a :class:`trio.abc.Stream` like ``trio.SSLStream`` (the same
handshake, the same errors: ``BrokenResourceError`` caused by the ``ssl.SSLError``,
``b""`` after the peer's close_notify), made for one reader task and one writer task, which
is how :class:`~transport.shell.Link` uses a stream. It drives the memory BIOs itself and
reads and writes the socket's descriptor directly, so a request costs one ``recv`` and a
reply one ``send`` with little Python around them: at one request in flight per site,
``trio.SSLStream``'s retry loop, locks and socket wrappers were 38 % of the master's event
loop (py-spy), of which the system calls themselves were under two thirds.

It can also write without waiting (:meth:`TLSStream.send_nowait`): what the socket does not
take at once stays queued here, and the next :meth:`~TLSStream.send_all` (``b""`` will do)
writes it first. The master's link uses that to answer a batch without waking a task per
connection.

The handshake runs the context's ``SSLObject`` class, so the revocation check and the alert
written before a failure (:mod:`transport.tls`) work as with ``trio.SSLStream``.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import trio

__all__ = ["TLSStream"]

_RECEIVE_SIZE = 65536


class TLSStream(trio.abc.Stream):
    """TLS on ``transport_stream`` (a connected :class:`trio.SocketStream`) with
    ``context``. ``receive_some`` and ``send_all`` may run at once (one task each), not two
    of either."""

    def __init__(self, transport_stream: trio.SocketStream, context: ssl.SSLContext, *,
                 server_side: bool = False, server_hostname: str | None = None) -> None:
        self.transport_stream = transport_stream
        self._fd = transport_stream.socket.fileno()
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=server_side,
                                     server_hostname=server_hostname)
        self._unsent = bytearray()  # ciphertext the socket has not taken yet
        self._handshaken = False
        self._broken: BaseException | None = None
        self._closed = False

    # ------------------------------------------------------------------ inspection
    def getpeercert(self, binary_form: bool = False) -> Any:
        return self._tls.getpeercert(binary_form)

    @property
    def unsent(self) -> bool:
        """Whether bytes a :meth:`send_nowait` queued wait for the next :meth:`send_all`."""
        return bool(self._unsent)

    # ------------------------------------------------------------------ handshake
    async def do_handshake(self) -> None:
        """Run the handshake (once; later calls return at once).

        Raises:
            trio.BrokenResourceError: it failed; ``__cause__`` is the ``ssl.SSLError``
                (e.g. :class:`~transport.tls.CertificateRevokedError`).
        """
        self._check_open()
        if self._handshaken:
            await trio.lowlevel.checkpoint()
            return
        tls = self._tls
        while True:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError as e:
                self._take_outgoing()
                self._write_some()  # an alert OpenSSL wrote, if the socket takes it
                raise self._break(e) from e
            self._take_outgoing()
            await self._write_unsent()
            if done:
                self._handshaken = True
                return
            await self._fill()

    # ------------------------------------------------------------------ receiving
    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Up to ``max_bytes`` of plaintext; ``b""`` once the peer has closed cleanly.

        Raises:
            trio.BrokenResourceError: the connection broke (TLS error, reset, an end
                without close_notify).
            trio.ClosedResourceError: this stream was closed.
        """
        self._check_open()
        if not self._handshaken:
            await self.do_handshake()
        tls = self._tls
        size = max_bytes or _RECEIVE_SIZE
        waited = False
        while True:
            try:
                data = tls.read(size)
            except ssl.SSLWantReadError:
                await self._fill()
                waited = True
                continue
            except ssl.SSLZeroReturnError:
                data = b""
            except ssl.SSLError as e:
                raise self._break(e) from e
            if self._outgoing.pending:  # (e.g. a key update's answer): sent when it can be
                self._take_outgoing()
                self._write_some()
            if not waited:
                await trio.lowlevel.checkpoint()
            return data

    async def _fill(self) -> None:
        """Read what the socket has (waiting for some) into the incoming BIO."""
        fd = self._fd
        while True:
            try:
                data = os.read(fd, _RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(fd)
                continue
            except OSError as e:
                raise self._break(e) from e
            if data:
                self._incoming.write(data)
            else:
                self._incoming.write_eof()
            return

    # ------------------------------------------------------------------ sending
    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and write ``data`` after anything :meth:`send_nowait` left queued;
        return once the socket has taken all of it.

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError: as :meth:`receive_some`.
        """
        self._check_open()
        if not self._handshaken:
            await self.do_handshake()
        if data:
            self._encrypt(data)
        if self._write_some():
            await trio.lowlevel.checkpoint()
            return
        await self._write_unsent()

    def send_nowait(self, data: bytes | bytearray | memoryview) -> bool:
        """Encrypt ``data`` and write what the socket takes now; True if it took it all.
        What it did not take stays queued for the next :meth:`send_all`. Only once the
        handshake is done.

        Raises:
            trio.BrokenResourceError, trio.ClosedResourceError: as :meth:`receive_some`.
        """
        self._check_open()
        if not self._handshaken:
            raise RuntimeError("send_nowait before the handshake")
        self._encrypt(data)
        return self._write_some()

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport_stream.wait_send_all_might_not_block()

    def _encrypt(self, data: bytes | bytearray | memoryview) -> None:
        try:
            self._tls.write(data)
        except ssl.SSLError as e:
            raise self._break(e) from e
        self._take_outgoing()

    def _take_outgoing(self) -> None:
        self._unsent += self._outgoing.read()

    def _write_some(self) -> bool:
        """Write what the socket takes now; True if nothing is left unsent."""
        unsent = self._unsent
        fd = self._fd
        while unsent:
            try:
                written = os.write(fd, unsent)
            except BlockingIOError:
                return False
            except OSError as e:
                raise self._break(e) from e
            del unsent[:written]
        return True

    async def _write_unsent(self) -> None:
        while not self._write_some():
            await trio.lowlevel.wait_writable(self._fd)

    # ------------------------------------------------------------------ closing
    async def aclose(self) -> None:
        """Send close_notify if the socket takes it now (never waiting for the peer's),
        then close the socket."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            if self._handshaken and self._broken is None:
                try:
                    self._tls.unwrap()
                except ssl.SSLError:  # (SSLWantReadError: the peer's is not waited for)
                    pass
                self._take_outgoing()
                try:
                    self._write_some()
                except trio.BrokenResourceError:
                    pass  # the peer has gone: nothing to tell it
        finally:
            await self.transport_stream.aclose()

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the TLS stream is closed")
        if self._broken is not None:
            raise trio.BrokenResourceError("the TLS stream is broken") from self._broken

    def _break(self, error: BaseException) -> trio.BrokenResourceError:
        if self._closed:  # closed under our feet (the socket is gone)
            raise trio.ClosedResourceError("the TLS stream is closed") from error
        self._broken = error
        return trio.BrokenResourceError(str(error))
