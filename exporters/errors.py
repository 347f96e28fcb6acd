"""Errors raised by the audit export. One root, :class:`ExportError`; callers catch that.

Branches: :class:`EnvelopeError` (encrypting, signing, decrypting, verifying and the key
files behind them), :class:`SinkError` (delivering files), :class:`ExportConfigError` (the
``[export]`` settings), :class:`BuildError` (a day's export cannot be built from the ledger),
:class:`VerifyError` (a recipient's check failed) and :class:`ReplayError` (verified exports
cannot be replayed into a ledger). Within the sinks only :class:`SinkUnavailableError` is
transient: it is the one the retry loop retries.
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


class ExportConfigError(ExportError):
    """The ``[export]`` settings are missing or wrong; the message names the key."""


class BuildError(ExportError):
    """A day's export cannot be built: the day is not over, an earlier day is not exported,
    or the ledger's records disagree with what earlier exports said."""


class VerifyError(ExportError):
    """An export failed verification. The message names the day or file and the reason."""


class ReplayError(ExportError):
    """Verified exports could not be replayed into a ledger (it holds another history)."""


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
