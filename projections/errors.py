"""Errors raised by the read models. One root, :class:`ProjectionError`.

It subclasses :class:`ledger.LedgerError` so that the command line reports it like any other
ledger failure: one line on stderr, exit status 1.
"""

from __future__ import annotations

from ledger.errors import LedgerError


class ProjectionError(LedgerError):
    """Root of every error the projections raise on purpose."""


class UnknownProjectionError(ProjectionError):
    """No read model of that name exists."""


class ViewStoreError(ProjectionError):
    """The view tables could not be read or written."""


class ConcurrentRunnerError(ProjectionError):
    """Another runner moved a projection's position while this one was applying a batch."""
