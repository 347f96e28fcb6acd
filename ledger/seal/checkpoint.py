"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed notes, Ed25519 only.

A checkpoint names the log (its origin), the tree size and the RFC 9162 root at that
size. The note form is the one Go's ``golang.org/x/mod/sumdb/note`` and the
transparency-dev tools read, so a checkpoint we export can be checked with their tools::

    seatledger.example/acme
    1024
    <base64 root>

    — seatledger.example/acme <base64(4-byte key id || 64-byte signature)>

See https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ledger.errors import CheckpointError

__all__ = [
    "Checkpoint",
    "open_checkpoint",
    "open_note",
    "sign_checkpoint",
    "sign_note",
    "verifier_key",
]

_ED25519 = b"\x01"  # signed-note signature type for Ed25519
_SIG_PREFIX = "\u2014 "  # em dash, space
_MAX_SIGNATURES = 100  # the spec asks verifiers to accept at least 16
_MAX_SIZE = 2**64  # tree sizes are uint64 in every other implementation
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _is_text(text: str) -> bool:
    """Valid note text: encodable as UTF-8 and no control character but newline."""
    return _is_utf8(text) and not _CONTROL.search(text)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _is_line(text: str) -> bool:
    """A non-empty note line: no newline, no other control character."""
    return bool(text) and "\n" not in text and _is_text(text)


def _check_line(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _is_line(value):
        raise ValueError(f"checkpoint {attribute.name} must be one non-empty line: {value!r}")


def _check_size(_: object, __: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value < _MAX_SIZE:
        raise ValueError(f"checkpoint size must be in 0..2**64-1, got {value}")


def _check_root(_: object, __: attrs.Attribute[bytes], value: bytes) -> None:
    if len(value) != 32:
        raise ValueError(f"checkpoint root must be a 32-byte hash, got {len(value)} bytes")


def _check_extensions(
    _: object, __: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    for line in value:
        if not _is_line(line):
            raise ValueError(f"checkpoint extension must be one non-empty line: {line!r}")


@attrs.frozen
class Checkpoint:
    """A tree head: the log's origin, its size and the RFC 9162 root at that size."""

    origin: str = attrs.field(validator=_check_line)
    size: int = attrs.field(validator=_check_size)
    root: bytes = attrs.field(validator=_check_root)
    extensions: tuple[str, ...] = attrs.field(default=(), validator=_check_extensions)

    def body(self) -> str:
        """The note text: origin, decimal size, base64 root, extension lines."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "".join(line + "\n" for line in (*lines, *self.extensions))

    @classmethod
    def from_body(cls, text: str) -> Checkpoint:
        """Parse a note text written by :meth:`body`.

        Raises:
            CheckpointError: the text is not a tlog-checkpoint body.
        """
        if not text.endswith("\n"):
            raise CheckpointError("malformed checkpoint body: it must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("malformed checkpoint body: fewer than three lines")
        origin, size, root, *extensions = lines
        if not _DECIMAL.fullmatch(size):
            raise CheckpointError(f"malformed checkpoint body: size {size!r} is not decimal")
        root_hash = _b64decode(root)
        if root_hash is None or len(root_hash) != 32:
            raise CheckpointError(f"malformed checkpoint body: root {root!r} is not a hash")
        try:
            return cls(origin, int(size), root_hash, tuple(extensions))
        except ValueError as err:
            raise CheckpointError(f"malformed checkpoint body: {err}") from err


def _b64decode(text: str) -> bytes | None:
    """Strict standard base64, or None: only the canonical encoding of some bytes."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data).decode("ascii") == text else None


def _check_key_name(key_name: str) -> None:
    if not _is_line(key_name) or "+" in key_name or any(c.isspace() for c in key_name):
        raise ValueError(f"a note key name must be non-empty, without spaces or '+': {key_name!r}")


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes_raw()


def _key_id(key_name: str, public_key: Ed25519PublicKey) -> bytes:
    """SHA-256(key name || 0x0A || 0x01 || public key)[:4], as signed-note recommends."""
    digest = hashlib.sha256(key_name.encode("utf-8") + b"\n" + _ED25519 + _raw(public_key))
    return digest.digest()[:4]


def verifier_key(key_name: str, public_key: Ed25519PublicKey) -> str:
    """The vkey string ``<name>+<hex key id>+<base64(0x01 || public key)>``.

    Raises:
        ValueError: ``key_name`` is not a valid note key name.
    """
    _check_key_name(key_name)
    encoded = base64.b64encode(_ED25519 + _raw(public_key)).decode("ascii")
    return f"{key_name}+{_key_id(key_name, public_key).hex()}+{encoded}"


def sign_note(text: str, key_name: str, private_key: Ed25519PrivateKey) -> str:
    """A signed note: ``text``, a blank line and one Ed25519 signature line.

    Raises:
        ValueError: ``text`` is empty, does not end in a newline or holds a control
            character other than newline; or ``key_name`` is not a valid key name.
    """
    _check_key_name(key_name)
    if not text.endswith("\n") or not _is_text(text):
        raise ValueError("note text must be UTF-8, end in a newline, hold no control characters")
    return note_with_signature(text, key_name, private_key.public_key(),
                               private_key.sign(text.encode("utf-8")))


def note_with_signature(text: str, key_name: str, public_key: Ed25519PublicKey,
                        signature: bytes) -> str:
    """Assemble a signed note from a signature already made over ``text``."""
    encoded = base64.b64encode(_key_id(key_name, public_key) + signature).decode("ascii")
    return f"{text}\n{_SIG_PREFIX}{key_name} {encoded}\n"


def open_note(note: str, key_name: str, public_key: Ed25519PublicKey) -> str:
    """The text of ``note``, once a signature by this key has verified.

    Signatures by other keys are ignored, as the signed-note spec requires; every
    signature by this key must verify.

    Raises:
        CheckpointError: the note is malformed, has no signature by this key, or a
            signature by this key does not verify.
        ValueError: ``key_name`` is not a valid key name.
    """
    _check_key_name(key_name)
    if not _is_text(note):
        raise CheckpointError("malformed note: not UTF-8, or it holds a control character")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise CheckpointError("malformed note: no blank line before the signatures")
    text, signature_block = note[: split + 1], note[split + 2 : -1]
    lines = signature_block.split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise CheckpointError(f"malformed note: more than {_MAX_SIGNATURES} signatures")
    key_id = _key_id(key_name, public_key)
    ours: list[bytes] = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise CheckpointError(f"malformed note: not a signature line: {line[:80]!r}")
        name, _, encoded = line[len(_SIG_PREFIX) :].partition(" ")
        blob = _b64decode(encoded)
        if not name or "+" in name or blob is None or len(blob) < 5:
            raise CheckpointError(f"malformed note: bad signature line: {line[:80]!r}")
        if name == key_name and blob[:4] == key_id:
            ours.append(blob[4:])
    if not ours:
        raise CheckpointError(f"note has no signature by key {key_name}+{key_id.hex()}")
    for signature in ours:
        try:
            public_key.verify(signature, text.encode("utf-8"))
        except InvalidSignature as err:
            raise CheckpointError(f"bad signature by key {key_name}+{key_id.hex()}") from err
    return text


def sign_checkpoint(checkpoint: Checkpoint, key_name: str, private_key: Ed25519PrivateKey) -> str:
    """The whole signed-note text of ``checkpoint``, signed by ``private_key``.

    Raises:
        ValueError: ``key_name`` is not a valid note key name.
    """
    return sign_note(checkpoint.body(), key_name, private_key)


def open_checkpoint(note: str, key_name: str, public_key: Ed25519PublicKey) -> Checkpoint:
    """Verify ``note``'s signature by this key, then parse its checkpoint body.

    Raises:
        CheckpointError: malformed note, no signature by this key, bad signature,
            or malformed checkpoint body.
    """
    return Checkpoint.from_body(open_note(note, key_name, public_key))
