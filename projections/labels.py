"""The identifying labels in the view tables — sites, users, tenants, campaigns, the
customer, and the free-text details that name sites — are stored sealed, never in clear.

Theory of operation. The views share the store (the same SQLite file) with the event rows,
which the ledger encrypts with the data directory's at-rest key; labels in clear beside them
would undo that for anyone holding a copy of the file. So every label is stored as
``AES-SIV(value)`` (RFC 5297, deterministic authenticated encryption) under a key derived from
the at-rest key, with the label's kind (``site``, ``user``, ...) as associated data:

- Deterministic, so the database can still match and group: "this user's history", "usage
  by tenant" and the usage upserts compare sealed values, and a rebuild writes the very same
  bytes (the tables of two runs can be compared byte for byte).
- Authenticated and reversible, so the answers carry the labels as they were: each query
  function opens what it reads, and every answer is what it was with labels in clear.
- The kind in the associated data keeps a tenant and a campaign of the same name apart.

What it gives away: which rows share a label (equality is what the database needs) and each
label's length, nothing of the label itself. A key other than the one the views were written
with changes :attr:`Labels.check`, which is part of the tables' fingerprint, so the runner
rebuilds them rather than failing to open them.

Labels are few (thousands of users, not millions), so both directions are cached: the replay
pays one dictionary look-up per label, not one encryption.

The key is derived from the data directory's at-rest key for this one purpose
(:meth:`ledger.persistence.codec.RowCipher.derive_key`), so the views need no key file of
their own and a copied file without the key reveals nothing.

Query functions take only a connection; they find the labels of the runner that made its
engine through :func:`labels_for` (see :func:`bind`).
"""

from __future__ import annotations

import weakref
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Connection, Engine

from ledger.persistence.codec import RowCipher

from .errors import ProjectionError, ViewStoreError

Kind = Literal["site", "user", "tenant", "campaign", "class", "customer", "detail"]
KINDS: tuple[Kind, ...] = ("site", "user", "tenant", "campaign", "class", "customer", "detail")

# The AES-GCM nonce that derives the views' secret from the at-rest key (see view_secret).
# The ledger draws its nonces at random (96 bits): it never uses this one for a row.
_SALT = b"seatledger-views"
# Beyond this many labels of one kind a cache starts again (a bound, not a working size).
_CACHE_LIMIT = 1_000_000


class LabelSeal:
    """Seals and opens the labels of one kind, both ways cached."""

    __slots__ = ("kind", "_siv", "_ad", "_sealed", "_opened")

    def __init__(self, kind: Kind, siv: AESSIV | None) -> None:
        self.kind = kind
        self._siv = siv
        self._ad = [b"seatledger view label: " + kind.encode()]
        self._sealed: dict[str, bytes] = {}
        self._opened: dict[bytes, str] = {}

    def seal(self, value: str) -> bytes:
        """The stored form of ``value``: always the same bytes for the same value."""
        stored = self._sealed.get(value)
        if stored is None:
            plain = value.encode()
            stored = plain if self._siv is None else self._siv.encrypt(plain, self._ad)
            self._remember(value, stored)
        return stored

    def open(self, stored: bytes) -> str:
        """The value of a stored label. Raises ViewStoreError if it does not open (the
        view was altered, or written under another key)."""
        value = self._opened.get(stored)
        if value is None:
            stored = bytes(stored)
            try:
                plain = stored if self._siv is None else self._siv.decrypt(stored, self._ad)
                value = plain.decode()
            except (InvalidTag, UnicodeDecodeError) as e:
                raise ViewStoreError(
                    f"a stored {self.kind} label does not open under this data directory's "
                    "key: rebuild the views with 'seatledger projections rebuild'") from e
            self._remember(value, stored)
        return value

    def maybe_seal(self, value: str | None) -> bytes | None:
        return None if value is None else self.seal(value)

    def _remember(self, value: str, stored: bytes) -> None:
        if len(self._sealed) >= _CACHE_LIMIT:
            self._sealed.clear()
            self._opened.clear()
        self._sealed[value] = stored
        self._opened[stored] = value


class Labels:
    """The label seals of one data directory's views, one per kind.

    ``Labels(None)`` stores labels as plain UTF-8: for a ledger without an at-rest key, whose
    events are not encrypted either.
    """

    def __init__(self, secret: bytes | None) -> None:
        siv = None if secret is None else AESSIV(_derive(secret, b"labels", 64))
        # Names the key, and nothing of it: part of the tables' fingerprint.
        self.check = "plain" if secret is None else _derive(secret, b"check", 8).hex()
        self._by_kind: dict[str, LabelSeal] = {kind: LabelSeal(kind, siv) for kind in KINDS}
        self.site = self._by_kind["site"]
        self.user = self._by_kind["user"]
        self.tenant = self._by_kind["tenant"]
        self.campaign = self._by_kind["campaign"]
        self.customer = self._by_kind["customer"]
        self.detail = self._by_kind["detail"]

    @classmethod
    def for_cipher(cls, cipher: RowCipher | None) -> Labels:
        return cls(None if cipher is None else view_secret(cipher))

    def for_dimension(self, dim: str) -> LabelSeal:
        """The seal of a usage dimension's keys (site, tenant, campaign or class)."""
        return self._by_kind[dim]


def view_secret(cipher: RowCipher) -> bytes:
    """A 32-byte secret for the views, derived from the at-rest key (HKDF, its own purpose)."""
    return cipher.derive_key(b"views")


def _derive(secret: bytes, purpose: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT,
                info=b"seatledger views: " + purpose).derive(secret)


# The labels of each runner's engine, so that the query functions, which take a connection,
# open what they read with the key of the data directory the runner was given.
_BOUND: weakref.WeakKeyDictionary[Engine, Labels] = weakref.WeakKeyDictionary()


def bind(engine: Engine, labels: Labels) -> None:
    """Make ``labels`` the labels of every connection of ``engine``."""
    _BOUND[engine] = labels


def labels_for(conn: Connection) -> Labels:
    """The labels of the views ``conn`` reads. Raises ProjectionError for a connection of
    an engine no runner made (it could not open them)."""
    labels = _BOUND.get(conn.engine)
    if labels is None:
        raise ProjectionError(
            "the views' labels are sealed: read them through a connection of the "
            "ProjectionRunner's engine (runner.connect() or runner.engine)")
    return labels


__all__ = ["KINDS", "Kind", "LabelSeal", "Labels", "bind", "labels_for", "view_secret"]
