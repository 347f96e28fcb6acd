"""The errors use cases raise besides the ledger's, the exporters' and the configuration's."""

from __future__ import annotations


class ServiceError(Exception):
    """Root of the use cases' own errors."""


class Refused(ServiceError):
    """The operation ran and the answer is no (the command line exits 1)."""


class UsageError(ServiceError):
    """The caller must say more or something else (the command line exits 2)."""


__all__ = ["Refused", "ServiceError", "UsageError"]
