"""Errors raised by the transport. One root, :class:`ProtocolError`; callers catch that.

As in h11, the split says whose fault it was: :class:`LocalProtocolError` means our own code
tried to do something the protocol forbids (a bug on this side); :class:`RemoteProtocolError`
means the peer sent something malformed, oversized or out of turn. The shell answers a remote
error with an ``Error`` message carrying :attr:`ProtocolError.code` and closes that connection
only.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of every error the transport raises on purpose.

    ``code`` is a short machine-readable reason, suitable for the ``code`` field of the
    ``Error`` message the shell sends before closing.
    """

    def __init__(self, text: str, code: str = "protocol_error") -> None:
        super().__init__(text)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol does not allow in the current state."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed, oversized, unknown or out of turn."""


class CertificateError(ProtocolError):
    """A certificate or key is malformed, or lacks what a seatledger identity needs."""
