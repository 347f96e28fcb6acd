"""Pulling customers' exports from an SFTP server into the vendor's inbox (paramiko).

The server must be in the known_hosts file given: unknown or changed host keys are refused,
never learnt. Each file is downloaded under a hidden temporary name in the inbox and then
linked to its name, which never replaces a file already there; it keeps the server's
modification time, which is when the export arrived. The day's files are fetched manifest
last, so an import running meanwhile never sees a manifest without its records.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs
import paramiko

from exporters.naming import MANIFEST_SUFFIX, SIGNATURE_SUFFIX, parse_name
from seatledger.vendor.registry import RegistryError

__all__ = ["PullResult", "SftpPullError", "SftpSource", "pull"]


class SftpPullError(RegistryError):
    """The SFTP server cannot be reached, is not the one known, or refused us."""


@attrs.frozen
class SftpSource:
    """``sftp://user@host:port/dir``: ``dir`` is relative to the login folder
    (``sftp://host//srv/inbox`` for an absolute one), as the export sinks write it."""

    host: str
    port: int
    username: str | None
    remote_dir: str

    @classmethod
    def parse(cls, url: str) -> SftpSource:
        """Raises SftpPullError: not an sftp:// URL with a host."""
        try:
            parts = urlsplit(url)
            port = parts.port or 22
        except ValueError as err:
            raise SftpPullError(f"bad SFTP URL {url!r}: {err}") from None
        if parts.scheme != "sftp" or not parts.hostname:
            raise SftpPullError(f"bad SFTP URL {url!r}: expected sftp://user@host:port/dir")
        path = unquote(parts.path)
        remote = path[1:] if path.startswith("/") else path
        return cls(parts.hostname, port, unquote(parts.username) if parts.username else None,
                   remote or ".")

    def __str__(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"sftp://{user}{self.host}:{self.port}/{self.remote_dir}"


@attrs.frozen
class PullResult:
    downloaded: tuple[str, ...]
    skipped: tuple[str, ...]  # already in the inbox with the same size
    conflicts: tuple[str, ...]  # in the inbox with another size: left alone


class _Reject(paramiko.RejectPolicy):  # type: ignore[misc]
    def __init__(self, known_hosts: Path) -> None:
        self._known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str,
                         key: paramiko.PKey) -> None:
        raise SftpPullError(f"the host key of {hostname} ({key.get_name()} "
                            f"{key.fingerprint}) is not in {self._known_hosts}: refused")


def _order(name: str) -> tuple[int, str]:
    """Records and signatures first, each day's manifest last."""
    if name.endswith(MANIFEST_SUFFIX):
        return 2, name
    if name.endswith(MANIFEST_SUFFIX + SIGNATURE_SUFFIX):
        return 1, name
    return 0, name


def pull(source: SftpSource, inbox: Path, *, known_hosts: Path, identity: Path | None,
         timeout: float = 30.0) -> PullResult:
    """Download every export file in ``source`` that the inbox lacks.

    Raises:
        SftpPullError: known_hosts or the key cannot be read, the host key is unknown or
            changed, login is refused, or the connection fails.
    """
    client = paramiko.SSHClient()
    try:
        client.get_host_keys().load(str(known_hosts))
    except OSError as err:
        raise SftpPullError(f"cannot read known_hosts {known_hosts}: {err.strerror}") from None
    client.set_missing_host_key_policy(_Reject(known_hosts))
    pkey = None
    if identity is not None:
        try:
            pkey = paramiko.PKey.from_path(identity)
        except OSError as err:
            raise SftpPullError(f"cannot read key {identity}: {err.strerror}") from None
        except paramiko.SSHException as err:
            raise SftpPullError(f"cannot load key {identity} (an unencrypted private key "
                                f"is needed): {err}") from None
    try:
        client.connect(source.host, source.port, username=source.username, pkey=pkey,
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       allow_agent=identity is None, look_for_keys=identity is None)
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(timeout)
        return _download(sftp, source, inbox)
    except paramiko.BadHostKeyException as err:
        raise SftpPullError(f"{source}: the host key does not match {known_hosts} (got "
                            f"{err.key.get_name()} {err.key.fingerprint}): refused") from None
    except paramiko.AuthenticationException as err:
        raise SftpPullError(f"{source}: login refused ({err})") from None
    except (paramiko.SSHException, OSError, EOFError) as err:
        raise SftpPullError(f"{source}: {err or type(err).__name__}") from None
    finally:
        client.close()


def _download(sftp: paramiko.SFTPClient, source: SftpSource, inbox: Path) -> PullResult:
    downloaded: list[str] = []
    skipped: list[str] = []
    conflicts: list[str] = []
    entries = [e for e in sftp.listdir_attr(source.remote_dir)
               if parse_name(e.filename) is not None and e.st_mode is not None
               and stat.S_ISREG(e.st_mode)]
    for entry in sorted(entries, key=lambda e: _order(e.filename)):
        name = entry.filename
        target = inbox / name
        if target.exists():
            (skipped if target.stat().st_size == entry.st_size else conflicts).append(name)
            continue
        temporary = inbox / f".{name}.{secrets.token_hex(6)}.part"
        try:
            sftp.get(f"{source.remote_dir}/{name}", str(temporary))
            if entry.st_mtime is not None:
                os.utime(temporary, (entry.st_mtime, entry.st_mtime))
            try:
                os.link(temporary, target)  # never replaces a file that appeared meanwhile
            except FileExistsError:
                conflicts.append(name)
                continue
        finally:
            temporary.unlink(missing_ok=True)
        downloaded.append(name)
    return PullResult(tuple(downloaded), tuple(skipped), tuple(conflicts))
