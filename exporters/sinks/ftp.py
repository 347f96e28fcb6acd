"""Sinks on an FTP server, plain (:class:`FtpSink`) or FTPS with explicit TLS (:class:`FtpsSink`).

FTPS verifies the server certificate (chain and host name) and protects the data channel too
(``PROT P``). Files go up in binary mode under a temporary name and are moved with RNFR/RNTO.
"""

from __future__ import annotations

import ftplib
import socket
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import (
    CertificateError,
    SinkAuthError,
    SinkConfigError,
    SinkError,
    SinkUnavailableError,
)
from .base import RetryPolicy, Sink, SinkSession
from .credentials import read_secret_file

__all__ = ["FtpSink", "FtpsSink"]

_TRANSIENT = (ftplib.error_temp, ftplib.error_reply, ftplib.error_proto, OSError, EOFError)


class FtpSink(Sink):
    """Deliver into ``remote_dir`` on a plain FTP server (passive mode).

    Raises:
        SinkConfigError: (on construction) the password file is unreadable or empty.
    """

    scheme = "ftp"

    def __init__(
        self,
        host: str,
        port: int = 21,
        *,
        username: str,
        password_file: Path,
        remote_dir: str = ".",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(retry=retry)
        self.host = host
        self.port = port
        self.username = username
        self.remote_dir = remote_dir
        self.timeout = timeout
        self._password = read_secret_file(password_file)

    @property
    def description(self) -> str:
        return f"{self.scheme}://{self.username}@{self.host}:{self.port}/{self.remote_dir}"

    def _new_client(self) -> ftplib.FTP:
        return ftplib.FTP(timeout=self.timeout)

    def connect(self) -> SinkSession:
        client = self._new_client()
        session = _FtpSession(client, self.description)
        try:
            with session.errors("connect"):
                client.connect(self.host, self.port)
                client.login(self.username, self._password)
                if isinstance(client, ftplib.FTP_TLS):
                    client.prot_p()
                client.voidcmd("TYPE I")
                client.cwd(self.remote_dir)
        except BaseException:
            session.abort()
            session.close()
            raise
        return session


class FtpsSink(FtpSink):
    """Deliver over FTPS (AUTH TLS, then PROT P for data).

    ``ca_file`` holds the CA certificate(s) the server's certificate must chain to; ``None``
    means the system trust store. The host name (or IP) must match the certificate.

    Raises:
        SinkConfigError: (on construction) the CA or password file is unusable.
    """

    scheme = "ftps"

    def __init__(
        self,
        host: str,
        port: int = 21,
        *,
        username: str,
        password_file: Path,
        ca_file: Path | None,
        remote_dir: str = ".",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            host,
            port,
            username=username,
            password_file=password_file,
            remote_dir=remote_dir,
            timeout=timeout,
            retry=retry,
        )
        try:
            self._context = ssl.create_default_context(
                cafile=str(ca_file) if ca_file is not None else None
            )
        except (OSError, ssl.SSLError) as err:
            raise SinkConfigError(f"cannot load CA file {ca_file}: {err}") from err
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2

    def _new_client(self) -> ftplib.FTP:
        return ftplib.FTP_TLS(context=self._context, timeout=self.timeout)


class _FtpSession(SinkSession):
    def __init__(self, client: ftplib.FTP, description: str) -> None:
        self._ftp = client
        self._description = description
        self._aborted = False

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Translate ftplib, socket and TLS errors raised inside the block."""
        prefix = f"{self._description}: {action}"
        if self._aborted:
            raise SinkUnavailableError(f"{prefix}: session was aborted")
        try:
            yield
        except SinkError:
            raise
        except ssl.SSLCertVerificationError as err:
            raise CertificateError(f"{prefix}: {err.verify_message}") from err
        except ftplib.error_perm as err:
            if str(err).startswith("530"):
                raise SinkAuthError(f"{prefix}: login refused ({err})") from err
            raise SinkError(f"{prefix}: {err}") from err
        except _TRANSIENT as err:
            raise SinkUnavailableError(f"{prefix}: {err or type(err).__name__}") from err

    def size(self, name: str) -> int | None:
        with self.errors(f"size {name}"):
            # SIZE is only meaningful in binary mode; some servers refuse it in ASCII.
            self._ftp.voidcmd("TYPE I")
            try:
                return self._ftp.size(name)
            except ftplib.error_perm as err:
                if str(err).startswith("550"):
                    return None
                raise

    def read(self, name: str) -> bytes:
        parts: list[bytes] = []
        with self.errors(f"read {name}"):
            self._ftp.retrbinary(f"RETR {name}", parts.append)
        return b"".join(parts)

    def write(self, name: str, chunks: Iterable[bytes]) -> None:
        with self.errors(f"write {name}"):
            self._ftp.voidcmd("TYPE I")
            connection = self._ftp.transfercmd(f"STOR {name}")
            try:
                with connection:
                    for chunk in chunks:
                        connection.sendall(chunk)
                    if isinstance(connection, ssl.SSLSocket):
                        connection.unwrap()
            except BaseException:
                self._drain_reply()
                raise
            self._ftp.voidresp()

    def _drain_reply(self) -> None:
        """After a failed transfer, read the server's verdict so the control channel is
        usable again (for removing the temporary file)."""
        try:
            self._ftp.voidresp()
        except ftplib.all_errors:
            pass

    def rename(self, source: str, target: str) -> None:
        with self.errors(f"rename {source} to {target}"):
            self._ftp.rename(source, target)

    def remove(self, name: str) -> None:
        with self.errors(f"remove {name}"):
            self._ftp.delete(name)

    def close(self) -> None:
        if not self._aborted:
            try:
                self._ftp.quit()
            except ftplib.all_errors:
                pass
        self._ftp.close()

    def abort(self) -> None:
        self._aborted = True
        sock = self._ftp.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
