"""The slave package's errors: one root, :class:`SlaveError`."""

from __future__ import annotations


class SlaveError(Exception):
    """The root of the slave connector's errors."""


class SeatRefusedError(SlaveError):
    """A log-on or log-off was refused; ``reason`` is the reason code."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class MasterUnreachableError(SlaveError):
    """No synced session with a master could be established (the cause is chained)."""


class LinkLostError(SlaveError):
    """The link to the master ended before it answered a request."""


class JournalKeyError(SlaveError):
    """The journal's key is missing or does not open the journal."""


__all__ = ["JournalKeyError", "LinkLostError", "MasterUnreachableError", "SeatRefusedError",
           "SlaveError"]
