"""Key material in the data directory: created by ``init``, owner-only (0600)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from exporters import SigningKey, generate_signing_key
from exporters import load_signing_key as load_export_key
from ledger.errors import KeyFileError
from seatledger.config.settings import ConfigError, Layout

EXPORT_KEY = "export-minisign.key"
EXPORT_PUB = "export-minisign.pub"


def write_private(path: Path, data: bytes) -> None:
    """Create a file readable by the owner only; never overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def create_signing_key(private_path: Path, public_path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    write_private(private_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    public_path.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Raises KeyFileError with a one-line reason."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise KeyFileError(f"signing key {path} is missing") from None
    except (ValueError, TypeError, OSError) as e:
        raise KeyFileError(f"signing key {path} cannot be loaded: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"signing key {path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise KeyFileError(f"public key {path} is missing") from None
    except (ValueError, OSError) as e:
        raise KeyFileError(f"public key {path} cannot be loaded: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"public key {path} is not an Ed25519 key")
    return key


def ensure_export_keys(layout: Layout) -> SigningKey:
    """The master's minisign export key, created (0600, with its .pub) if there is none.

    Raises:
        KeyMaterialError: the key file is unreadable or damaged.
    """
    secret, public = layout.keys / EXPORT_KEY, layout.keys / EXPORT_PUB
    if secret.exists():
        key = load_export_key(secret)
        if not public.exists():
            public.write_text(key.public_key_text)
        return key
    layout.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    return generate_signing_key(secret, public)


def export_public_key_text(layout: Layout) -> str:
    """The master's minisign public key (created with the key pair if needed), for the vendor."""
    ensure_export_keys(layout)
    return (layout.keys / EXPORT_PUB).read_text()


def read_private(path: Path, what: str) -> bytes:
    """A secret file's content (stripped), which only its owner may read: a webhook secret,
    an SMTP password, the dashboard's token.

    Raises:
        ConfigError: missing or unreadable, readable by others, or empty (one line).
    """
    try:
        mode = path.stat().st_mode
        data = path.read_bytes().strip()
    except OSError as e:
        raise ConfigError(f"{what} {path}: {e.strerror or e}") from None
    if mode & 0o077:
        raise ConfigError(f"{what} {path} is readable by others (mode {mode & 0o777:o}): "
                          "chmod 600 it")
    if not data:
        raise ConfigError(f"{what} {path} is empty")
    return data


def write_replacing(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (0600, in a 0700 directory) through a temporary file and a
    rename, so that readers see the old or the new content, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
