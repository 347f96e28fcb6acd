"""Errors raised by the ledger. One root, :class:`LedgerError`; callers catch that."""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""


class LicenceError(LedgerError):
    """A licence could not be issued or amended as asked."""


class LicenceTooSmallError(LicenceError):
    """A master/slave licence must total at least 100 seats."""


class BadSiteNameError(LicenceError, ValueError):
    """A site name is not a DNS label. Also a ValueError, so that code outside the ledger
    (certificate issuing) can treat it as the bad argument it is."""


class LicenceNotFoundError(LedgerError):
    """The store holds no licence yet."""


class UnknownSiteError(LedgerError):
    """The site named is not enrolled."""


class SiteExistsError(LedgerError):
    """A site of that name is already enrolled."""


class UnknownSeatError(LedgerError):
    """No seat is held for that (site, user)."""


class StoreError(LedgerError):
    """The event store could not be opened, read or written."""


class KeyFileError(StoreError):
    """The at-rest key is missing, unreadable or not the key the store was written with."""


class SealError(LedgerError):
    """The audit seal failed to verify, or a seal artefact is malformed."""


class CheckpointError(SealError):
    """A signed checkpoint is malformed or its signature does not verify."""
