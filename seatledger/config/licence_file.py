"""Signed licence files and licence requests (``docs/licence-format.md``).

A licence file is the terms' TOML text, then the vendor's minisign signature of exactly that
text between two marker lines. ``minisign -V`` verifies it once the two parts are split (the
format document shows how); :func:`open_licence` does the same check here, against the vendor
key the master pinned at ``init``.

A licence request is what the vendor needs to bind a licence to one master: its origin, its
public keys and the fingerprint of its signing key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from exporters import SigningKey
from exporters.envelope import public_key_lines, verify_signature
from exporters.errors import EnvelopeError
from ledger.application import key_fingerprint
from ledger.domain.terms import LicenceFileError, LicenceTerms, parse_terms, render_terms
from ledger.errors import LicenceError

BEGIN = "-----BEGIN MINISIGN SIGNATURE-----"
END = "-----END MINISIGN SIGNATURE-----"
REQUEST_FORMAT = "seatledger-licence-request/1"

__all__ = ["BEGIN", "END", "LicenceRequest", "LicenceSignatureError", "SignedLicence",
           "key_fingerprint", "minisign_key_fingerprint", "open_licence", "read_request",
           "sign_licence", "split_licence"]


class LicenceSignatureError(LicenceError):
    """The licence file's signature is missing, malformed, by another key, or does not match."""


@attrs.frozen
class SignedLicence:
    """A licence file that verified: its terms, and the file's whole text."""

    terms: LicenceTerms
    text: str
    issuer: str  # fingerprint of the vendor key that signed it

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def minisign_key_fingerprint(public_key_text: str) -> str:
    """``sha256:<hex>`` of a minisign public key (its base64 line decoded): how the master
    names the vendor key it pinned."""
    lines = public_key_lines(public_key_text)
    try:
        raw = base64.b64decode(lines[0], validate=True) if len(lines) == 1 else b""
    except ValueError:
        raw = b""
    if len(raw) != 42:
        raise LicenceSignatureError("the vendor key is not a minisign public key (RW...)")
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def sign_licence(terms: LicenceTerms, key: SigningKey) -> str:
    """The licence file for ``terms``, signed with the vendor's minisign ``key``."""
    body = render_terms(terms)
    comment = f"seatledger licence {terms.licence_id} serial {terms.serial}"
    signature = key.sign(body.encode("utf-8"), comment).decode("ascii")
    return f"{body}{BEGIN}\n{signature.rstrip()}\n{END}\n"


def split_licence(text: str) -> tuple[str, str]:
    """(the signed terms text, the ``.minisig`` text).

    Raises:
        LicenceSignatureError: the file has no signature block.
    """
    head, sep, rest = text.partition(BEGIN + "\n")
    signature, sep2, tail = rest.partition(END)
    if not sep or not sep2 or tail.strip():
        raise LicenceSignatureError("the licence file carries no vendor signature block")
    return head, signature


def open_licence(data: bytes, vendor_key_text: str) -> SignedLicence:
    """Check a licence file's signature with the pinned vendor key; read its terms.

    Raises:
        LicenceSignatureError: not signed by that key, or changed since it was signed.
        LicenceFileError: signed, but its terms are malformed.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise LicenceFileError("malformed licence: the file is not UTF-8 text") from None
    body, signature = split_licence(text)
    try:
        verify_signature(body.encode("utf-8"), signature.encode("ascii", "replace"),
                         vendor_key_text)
    except EnvelopeError as e:
        reason = str(e).replace("the file", "the licence")
        raise LicenceSignatureError(f"bad signature: {reason}") from None
    try:
        terms = parse_terms(body)
    except LicenceFileError as e:
        raise LicenceFileError(f"malformed licence: {e}") from None
    return SignedLicence(terms, text, minisign_key_fingerprint(vendor_key_text))


@attrs.frozen
class LicenceRequest:
    """What binds a licence to one master."""

    origin: str
    signing_key: str  # the master's Ed25519 signing public key, base64 of its raw bytes
    export_key: str  # the master's minisign export public key (the .pub file's text)
    fingerprint: str  # key_fingerprint of signing_key

    def to_json(self) -> str:
        return json.dumps({"format": REQUEST_FORMAT, **attrs.asdict(self)}, indent=2) + "\n"

    @classmethod
    def for_master(cls, origin: str, signing_key: Ed25519PublicKey,
                   export_key_text: str) -> LicenceRequest:
        raw = signing_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return cls(origin, base64.b64encode(raw).decode("ascii"), export_key_text,
                   key_fingerprint(signing_key))


def read_request(path: Path) -> LicenceRequest:
    """Read a master's licence request file.

    Raises:
        LicenceFileError: unreadable, not a request, or its fingerprint does not match its key.
    """
    try:
        doc: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise LicenceFileError(f"cannot read licence request {path}: {e.strerror}") from None
    except (ValueError, UnicodeDecodeError):
        raise LicenceFileError(f"{path} is not a licence request (not JSON)") from None
    fields = ("origin", "signing_key", "export_key", "fingerprint")
    if (not isinstance(doc, dict) or doc.get("format") != REQUEST_FORMAT
            or not all(isinstance(doc.get(f), str) and doc[f] for f in fields)):
        raise LicenceFileError(f"{path} is not a seatledger licence request")
    try:
        raw = base64.b64decode(doc["signing_key"], validate=True)
        key = Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise LicenceFileError(f"{path}: the master's signing key is malformed") from None
    if key_fingerprint(key) != doc["fingerprint"]:
        raise LicenceFileError(f"{path}: the fingerprint does not match the master's key")
    minisign_key_fingerprint(doc["export_key"])
    return LicenceRequest(*(doc[f] for f in fields))
