"""The export envelope: age encryption to the vendor, a minisign signature by the master.

Both are formats a standard tool opens: ``age -d -i identity.txt FILE`` decrypts and
``minisign -V -p master.pub -m FILE`` verifies. The caller compresses before sealing; this
module only encrypts and signs. The signature covers the ciphertext, so the vendor can check
where a file came from before decrypting it, and its trusted comment names the file and the
day, so a valid signature cannot be moved onto another day's file unnoticed.

The master's minisign secret key is stored without a password (KDF algorithm "none", the
layout ``minisign -G -W`` writes): the daemon signs unattended, so the file's 0600 mode is
its protection, as for an SSH host key.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import NamedTuple

import attrs
import minisign
import pyrage

from .errors import DecryptError, EnvelopeError, KeyMaterialError, SignatureError

__all__ = [
    "AgeIdentity",
    "SealedExport",
    "SigningKey",
    "check_recipients",
    "decrypt_export",
    "export_comment",
    "generate_age_identity",
    "generate_signing_key",
    "load_signing_key",
    "public_key_line",
    "public_key_lines",
    "seal_export",
    "verify_signature",
    "write_age_identity",
]

_AGE_SECRET_PREFIX = "AGE-SECRET-KEY-1"


class SealedExport(NamedTuple):
    """An encrypted export and its detached signature (the ``.minisig`` file's bytes)."""

    ciphertext: bytes
    signature: bytes


@attrs.frozen(eq=False, repr=False)
class SigningKey:
    """The master's minisign secret key, unencrypted and ready to sign.

    Build it with :func:`generate_signing_key` or :func:`load_signing_key`.
    """

    _secret: minisign.SecretKey

    @property
    def public_key_text(self) -> str:
        """The public key as a ``.pub`` file holds it (comment line and base64 line)."""
        return bytes(self._secret.get_public_key()).decode("ascii") + "\n"

    def sign(self, data: bytes, trusted_comment: str) -> bytes:
        """Sign ``data`` (pre-hashed, minisign's default); return the ``.minisig`` file's bytes.

        Raises:
            ValueError: the comment has a line break or an unprintable character.
        """
        try:
            signature = self._secret.sign(data, trusted_comment=trusted_comment)
        except minisign.ParseError as err:
            raise ValueError(f"unusable trusted comment {trusted_comment!r}: {err}") from None
        return bytes(signature) + b"\n"


@attrs.frozen(repr=False)
class AgeIdentity:
    """An age X25519 key pair: ``secret`` is ``AGE-SECRET-KEY-1...``, ``recipient`` ``age1...``."""

    secret: str
    recipient: str

    def __repr__(self) -> str:
        return f"AgeIdentity(recipient={self.recipient!r})"

    @property
    def file_text(self) -> str:
        """The identity in the layout ``age-keygen`` writes, for ``age -d -i FILE``."""
        return f"# public key: {self.recipient}\n{self.secret}\n"


def export_comment(file_name: str, day: datetime.date) -> str:
    """The trusted comment that binds a signature to one export file and day."""
    return f"file:{file_name}\tday:{day.isoformat()}"


def seal_export(
    payload: bytes,
    recipients: list[str],
    signing_key: SigningKey,
    *,
    file_name: str,
    day: datetime.date,
) -> SealedExport:
    """Encrypt ``payload`` to every age ``recipients`` key and sign the ciphertext.

    Raises:
        KeyMaterialError: no recipients, or one is not an age X25519 public key.
        EnvelopeError: encryption failed.
    """
    parsed = _parse_recipients(recipients)
    try:
        ciphertext = pyrage.encrypt(payload, parsed)
    except pyrage.EncryptError as err:
        raise EnvelopeError(f"age encryption failed: {err}") from err
    return SealedExport(ciphertext, signing_key.sign(ciphertext, export_comment(file_name, day)))


def check_recipients(recipients: list[str]) -> None:
    """Check that ``recipients`` is a non-empty list of age X25519 public keys.

    Raises:
        KeyMaterialError: no recipients, or one is not an age X25519 public key.
    """
    _parse_recipients(recipients)


def decrypt_export(ciphertext: bytes, identity_text: str) -> bytes:
    """Decrypt an age file with the identities in ``identity_text`` (an identity file's text).

    Raises:
        KeyMaterialError: the text holds no usable age identity.
        DecryptError: the file is damaged, not age, or not encrypted to these identities.
    """
    identities = _parse_identities(identity_text)
    try:
        return bytes(pyrage.decrypt(ciphertext, identities))
    except pyrage.DecryptError as err:
        if "no matching keys" in str(err).lower():
            raise DecryptError("the export is not encrypted to this identity") from err
        raise DecryptError(f"the export is damaged or not an age file ({err})") from err


def verify_signature(
    data: bytes,
    signature: bytes,
    public_key_text: str,
    *,
    expected_comment: str | None = None,
) -> str:
    """Check a minisign signature of ``data``; return its trusted comment.

    ``public_key_text`` is a ``.pub`` file's text or its bare base64 line.

    Raises:
        KeyMaterialError: the public key is malformed.
        SignatureError: the signature is malformed, by another key, does not match the data,
            or (with ``expected_comment``) was made for another file or day.
    """
    public_key = _parse_public_key(public_key_text)
    try:
        parsed = minisign.Signature.from_bytes(signature)
    except minisign.ParseError as err:
        raise SignatureError(f"the signature file is malformed ({err})") from err
    try:
        public_key.verify(data, parsed)
    except minisign.VerifyError as err:
        if "key identifiers" in str(err):
            raise SignatureError("the file was signed by another key than the one given") from err
        raise SignatureError(
            "the signature does not match the file (altered, truncated or re-signed)"
        ) from err
    if expected_comment is not None and parsed.trusted_comment != expected_comment:
        raise SignatureError(
            f"the signature is for {parsed.trusted_comment!r}, expected {expected_comment!r}"
        )
    return str(parsed.trusted_comment)


def generate_signing_key(secret_path: Path, public_path: Path) -> SigningKey:
    """Create a password-less minisign key pair; write the secret key 0600 and the public key.

    Raises:
        KeyMaterialError: a file already exists or cannot be written (nothing is overwritten).
    """
    secret = minisign.KeyPair.generate().secret_key
    key = SigningKey(secret)
    _write_new_file(secret_path, bytes(secret) + b"\n", 0o600)
    _write_new_file(public_path, key.public_key_text.encode("ascii"), 0o600)
    return key


def load_signing_key(secret_path: Path) -> SigningKey:
    """Load an unencrypted minisign secret key (as written here or by ``minisign -G -W``).

    Raises:
        KeyMaterialError: unreadable, malformed, password-protected, or not self-consistent.
    """
    try:
        secret = minisign.SecretKey.from_bytes(secret_path.read_bytes())
    except OSError as err:
        raise KeyMaterialError(f"cannot read signing key {secret_path}: {err.strerror}") from err
    except minisign.ParseError as err:
        raise KeyMaterialError(f"{secret_path} is not a minisign secret key ({err})") from err
    if secret.is_encrypted():
        raise KeyMaterialError(
            f"{secret_path} is password-protected; the daemon needs an unencrypted key "
            "(minisign -G -W)"
        )
    # A damaged file still parses; one signature round trip proves the halves belong together.
    probe = b"seatledger signing key self-test"
    try:
        secret.get_public_key().verify(probe, secret.sign(probe))
    except minisign.Error as err:
        raise KeyMaterialError(f"{secret_path} is damaged: its key halves do not match") from err
    return SigningKey(secret)


def generate_age_identity() -> AgeIdentity:
    """Create a new age X25519 identity (for tests and for setting up a vendor)."""
    identity = pyrage.x25519.Identity.generate()
    return AgeIdentity(secret=str(identity), recipient=str(identity.to_public()))


def write_age_identity(path: Path, identity: AgeIdentity) -> None:
    """Write ``identity`` as an ``age-keygen``-style file, mode 0600, never overwriting.

    Raises:
        KeyMaterialError: the file exists or cannot be written.
    """
    _write_new_file(path, identity.file_text.encode("ascii"), 0o600)


def _parse_recipients(recipients: list[str]) -> list[pyrage.x25519.Recipient]:
    if not recipients:
        raise KeyMaterialError("no age recipients configured")
    parsed = []
    for text in recipients:
        try:
            parsed.append(pyrage.x25519.Recipient.from_str(text.strip()))
        except pyrage.RecipientError as err:
            raise KeyMaterialError(f"not an age X25519 public key: {text!r} ({err})") from err
    return parsed


def _parse_identities(identity_text: str) -> list[pyrage.x25519.Identity]:
    lines = [line.strip() for line in identity_text.splitlines()]
    secret_lines = [line for line in lines if line.startswith(_AGE_SECRET_PREFIX)]
    if not secret_lines:
        raise KeyMaterialError("no AGE-SECRET-KEY-1... line in the identity text")
    try:
        return [pyrage.x25519.Identity.from_str(line) for line in secret_lines]
    except pyrage.IdentityError as err:
        # The message must not quote the secret line.
        raise KeyMaterialError(f"malformed age identity ({err})") from None


def public_key_lines(text: str) -> list[str]:
    """The non-comment lines of a minisign ``.pub`` file's text (one, in a good file)."""
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("untrusted comment:")]


def public_key_line(text: str) -> str:
    """A minisign public key's base64 line: the ``.pub`` file without its comment ("" if
    there is none). Two texts name the same key when their lines are equal."""
    lines = public_key_lines(text)
    return lines[0] if lines else ""


def _parse_public_key(text: str) -> minisign.PublicKey:
    lines = public_key_lines(text)
    if len(lines) != 1:
        raise KeyMaterialError("expected one minisign public key line (RW...)")
    try:
        return minisign.PublicKey.from_base64(lines[0])
    except minisign.ParseError as err:
        raise KeyMaterialError(f"not a minisign public key ({err})") from err


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with exactly ``mode`` (umask aside), refusing to replace a file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyMaterialError(f"{path} already exists; not overwriting key material") from None
    except OSError as err:
        raise KeyMaterialError(f"cannot create {path}: {err.strerror}") from err
    with os.fdopen(fd, "wb") as file:
        os.fchmod(fd, mode)
        file.write(data)
        file.flush()
        os.fsync(fd)
