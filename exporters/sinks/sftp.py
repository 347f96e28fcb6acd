"""A sink on an SFTP server, through paramiko.

The server must already be in the configured known_hosts file: unknown or changed host keys
are refused (``RejectPolicy``), never learnt. Authentication is a private key file or a
password file; secrets never appear in configuration. Files are written under a temporary
name and moved with ``posix-rename@openssh.com`` (plain SFTP rename where unsupported).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import paramiko

from ..errors import (
    HostKeyError,
    SinkAuthError,
    SinkConfigError,
    SinkError,
    SinkUnavailableError,
)
from .base import RetryPolicy, Sink, SinkSession
from .credentials import read_secret_file

__all__ = ["SftpSink"]


class _RejectUnknownHost(paramiko.RejectPolicy):  # type: ignore[misc]
    """RejectPolicy that says which known_hosts file lacked the host, as a HostKeyError."""

    def __init__(self, known_hosts: Path) -> None:
        self._known_hosts = known_hosts

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        raise HostKeyError(
            f"host key of {hostname} ({key.get_name()} {key.fingerprint}) "
            f"is not in {self._known_hosts}"
        )


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Accept the server's key only if its SHA256 fingerprint is the pinned one (a licence's
    ``host_key``, as ``ssh-keygen -lf`` prints it)."""

    def __init__(self, fingerprint: str) -> None:
        self._fingerprint = fingerprint

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        if key.fingerprint != self._fingerprint:
            raise HostKeyError(
                f"host key of {hostname} ({key.get_name()} {key.fingerprint}) is not the "
                f"pinned {self._fingerprint}"
            )


class SftpSink(Sink):
    """Deliver into ``remote_dir`` on an SFTP server.

    Exactly one of ``key_file`` (an unencrypted private key) and ``password_file`` is given.
    The server is known by ``known_hosts``, or by the SHA256 fingerprint ``host_key`` pinned
    instead (the destination a licence directs names it).

    Raises:
        SinkConfigError: (on construction) missing/unreadable known_hosts, key or password file,
            or not exactly one of them.
    """

    def __init__(
        self,
        host: str,
        port: int = 22,
        *,
        username: str,
        known_hosts: Path | None = None,
        host_key: str | None = None,
        key_file: Path | None = None,
        password_file: Path | None = None,
        remote_dir: str = ".",
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(retry=retry)
        if (key_file is None) == (password_file is None):
            raise SinkConfigError("SFTP sink: give exactly one of key_file and password_file")
        self.host = host
        self.port = port
        self.username = username
        self.known_hosts = Path(known_hosts) if known_hosts is not None else None
        self.host_key = host_key
        self.remote_dir = remote_dir
        self.timeout = timeout
        if self.known_hosts is None and not host_key:
            raise SinkConfigError("SFTP sink: give known_hosts or a pinned host key")
        if self.known_hosts is not None and not host_key:
            try:
                paramiko.HostKeys(str(self.known_hosts))
            except OSError as err:
                raise SinkConfigError(
                    f"cannot read known_hosts {self.known_hosts}: {err.strerror}"
                ) from err
        self._pkey: paramiko.PKey | None = None
        self._password: str | None = None
        if key_file is not None:
            try:
                self._pkey = paramiko.PKey.from_path(Path(key_file))
            except OSError as err:
                raise SinkConfigError(f"cannot read key {key_file}: {err.strerror}") from err
            except paramiko.SSHException as err:
                raise SinkConfigError(
                    f"cannot load key {key_file} (must be an unencrypted private key): {err}"
                ) from err
        if password_file is not None:
            self._password = read_secret_file(password_file)

    @property
    def description(self) -> str:
        return f"sftp://{self.username}@{self.host}:{self.port}/{self.remote_dir}"

    def connect(self) -> SinkSession:
        client = paramiko.SSHClient()
        if self.host_key:
            client.set_missing_host_key_policy(_PinnedHostKey(self.host_key))
        else:
            assert self.known_hosts is not None
            client.get_host_keys().load(str(self.known_hosts))
            client.set_missing_host_key_policy(_RejectUnknownHost(self.known_hosts))
        try:
            client.connect(
                self.host,
                self.port,
                username=self.username,
                pkey=self._pkey,
                password=self._password,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                channel_timeout=self.timeout,
                allow_agent=False,
                look_for_keys=False,
            )
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.timeout)
        except SinkError:
            client.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as err:
            client.close()
            raise self._translate(err) from err
        except BaseException:
            client.close()
            raise
        return _SftpSession(client, sftp, self.remote_dir, self.description)

    def _translate(self, err: paramiko.SSHException | OSError | EOFError) -> SinkError:
        prefix = f"{self.description}: connect"
        if isinstance(err, paramiko.BadHostKeyException):
            return HostKeyError(
                f"{prefix}: host key of {self.host}:{self.port} does not match "
                f"{self.host_key or self.known_hosts} "
                f"(got {err.key.get_name()} {err.key.fingerprint})"
            )
        if isinstance(err, paramiko.AuthenticationException):
            return SinkAuthError(f"{prefix}: authentication as {self.username} refused ({err})")
        return SinkUnavailableError(f"{prefix}: {err or type(err).__name__}")


class _SftpSession(SinkSession):
    def __init__(
        self,
        client: paramiko.SSHClient,
        sftp: paramiko.SFTPClient,
        remote_dir: str,
        description: str,
    ) -> None:
        self._client = client
        self._sftp = sftp
        self._remote_dir = remote_dir
        self._description = description

    def _path(self, name: str) -> str:
        return posixpath.join(self._remote_dir, name)

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except SinkError:
            raise
        except PermissionError as err:
            raise SinkError(f"{self._description}: {action}: permission denied") from err
        except FileNotFoundError as err:
            raise SinkError(f"{self._description}: {action}: no such file or folder") from err
        except (OSError, EOFError, paramiko.SSHException) as err:
            raise SinkUnavailableError(
                f"{self._description}: {action}: {err or type(err).__name__}"
            ) from err

    def size(self, name: str) -> int | None:
        with self._errors(f"stat {name}"):
            try:
                size = self._sftp.stat(self._path(name)).st_size
            except FileNotFoundError:
                return None
            return size if size is not None else 0

    def read(self, name: str) -> bytes:
        with self._errors(f"read {name}"), self._sftp.open(self._path(name), "rb") as file:
            file.prefetch()
            return bytes(file.read())

    def write(self, name: str, chunks: Iterable[bytes]) -> None:
        with self._errors(f"write {name}"), self._sftp.open(self._path(name), "wx") as file:
            file.set_pipelined(True)
            for chunk in chunks:
                file.write(chunk)

    def rename(self, source: str, target: str) -> None:
        with self._errors(f"rename {source} to {target}"):
            try:
                self._sftp.posix_rename(self._path(source), self._path(target))
            except OSError as err:
                # Servers without the OpenSSH extension answer "unsupported", without errno.
                if err.errno is not None:
                    raise
                self._sftp.rename(self._path(source), self._path(target))

    def remove(self, name: str) -> None:
        with self._errors(f"remove {name}"):
            self._sftp.remove(self._path(name))

    def close(self) -> None:
        self._client.close()

    def abort(self) -> None:
        self._client.close()
