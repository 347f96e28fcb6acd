"""The journal's key and cipher: who the journal's rows are about stays unreadable in a copy.

User ids, tenants and campaigns are sealed with AES-256-GCM (a random nonce per value, the
row's identity as associated data, so a sealed value cannot be moved to another row). Seats
are looked up by user through a keyed hash (HMAC-SHA256) instead of the user id.

The key is 32 random bytes kept in ``journal.key`` (0600) beside ``journal.db``, created on
first use. A copy is also kept inside the journal, wrapped (AES-GCM) under a key derived from
the site's TLS private key: the journal can then be opened with the site's bundle when the key
file is lost (a journal copied to another state directory, as when it is restored from a
backup), while a copy of ``journal.db`` alone reveals nothing. The key file survives a
re-enrolment with a new certificate; on the next open the wrapped copy is renewed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from seatledger.slave.errors import JournalKeyError

KEY_SIZE = 32
_NONCE = 12
_WRAP_AAD = b"seatledger journal key v1"


class JournalCipher:
    """Seals and opens the journal's identifying values under one data key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise JournalKeyError(f"a journal key is {KEY_SIZE} bytes, not {len(key)}")
        self.key = key
        self._aead = AESGCM(_derive(key, b"seal"))
        self._lookup = _derive(key, b"lookup")
        self.check = _derive(key, b"check")[:16]
        """A value that names this key without revealing it (kept in the journal)."""

    def seal(self, plaintext: bytes, row: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, row)

    def open(self, sealed: bytes, row: bytes) -> bytes:
        """Raises JournalKeyError if ``sealed`` was not sealed for ``row`` under this key."""
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], row)
        except InvalidTag:
            raise JournalKeyError("a journal row does not open under the journal's key "
                                  "(altered, or sealed under another key)") from None

    def lookup_id(self, value: str) -> bytes:
        """A stable keyed hash of ``value``, for lookups without the value itself."""
        return hmac.digest(self._lookup, value.encode(), hashlib.sha256)


def wrap_key(key: bytes, site_secret: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(_derive(site_secret, b"wrap")).encrypt(nonce, key, _WRAP_AAD)


def unwrap_key(wrapped: bytes, site_secret: bytes) -> bytes | None:
    """The data key, or None if ``site_secret`` is not the one it was wrapped under."""
    try:
        return AESGCM(_derive(site_secret, b"wrap")).decrypt(wrapped[:_NONCE], wrapped[_NONCE:],
                                                             _WRAP_AAD)
    except InvalidTag:
        return None


def read_key(path: Path) -> bytes | None:
    """The key in ``path`` (made 0600 if it was not), or None if there is no such file."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        return None
    os.chmod(path, 0o600)
    if len(key) != KEY_SIZE:
        raise JournalKeyError(f"{path} is not a journal key ({len(key)} bytes, not {KEY_SIZE})")
    return key


def write_key(path: Path, key: bytes) -> None:
    """Write ``key`` to ``path``, readable by the owner only, durably (never replacing one)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if a key appeared meanwhile: never overwrite a key
    finally:
        tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def new_key() -> bytes:
    return secrets.token_bytes(KEY_SIZE)


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"seatledger-journal",
                info=purpose).derive(secret)


__all__ = ["KEY_SIZE", "JournalCipher", "new_key", "read_key", "unwrap_key", "wrap_key",
           "write_key"]
