"""Errors raised by the audit export. One root, :class:`ExportError`; callers catch that.

Two branches: :class:`EnvelopeError` (encrypting, signing, decrypting, verifying and the key
files behind them) and :class:`SinkError` (delivering files). Within the sinks only
:class:`SinkUnavailableError` is transient: it is the one the retry loop retries.
"""

from __future__ import annotations


class ExportError(Exception):
    """Root of every error the export raises on purpose."""


class EnvelopeError(ExportError):
    """An export could not be sealed or opened."""


class KeyMaterialError(EnvelopeError):
    """A key, identity or recipient is missing, unreadable, malformed or password-protected."""


class SignatureError(EnvelopeError):
    """A signature is malformed, made by another key, or does not match the data."""


class DecryptError(EnvelopeError):
    """Ciphertext is damaged, not age-encrypted, or not encrypted to the identity given."""


class SinkError(ExportError):
    """A file could not be delivered to, or read from, a sink. Permanent unless a subclass
    says otherwise."""


class SinkConfigError(SinkError):
    """A sink's configuration is unusable: a missing secret file, an unreadable key."""


class SinkUnavailableError(SinkError):
    """The sink could not be reached, or the connection broke. Transient: retried."""


class SinkAuthError(SinkError):
    """The server refused our credentials."""


class HostKeyError(SinkError):
    """The SSH server's host key is unknown or differs from the configured known_hosts."""


class CertificateError(SinkError):
    """The FTPS server's certificate does not verify against the configured CA file."""


class RemoteMissingError(SinkError):
    """The file asked for does not exist on the sink."""


class RemoteConflictError(SinkError):
    """A file of the same name but different content already exists; it is never overwritten."""

    def __init__(
        self, message: str, *, name: str, local_sha256: str, remote_sha256: str | None
    ) -> None:
        super().__init__(message)
        self.name = name
        self.local_sha256 = local_sha256
        #: ``None`` when the sizes differ and the remote file was not downloaded.
        self.remote_sha256 = remote_sha256
