"""Constants the command groups' parsers need, kept here so that building a parser (for
``seatledger COMMAND --help``) imports no heavy package.

Each is a copy of a value defined in a package that is slow to import (importing any module
of :mod:`projections` runs its ``__init__``, which loads SQLAlchemy and the ledger), so the
original stays the one source of truth: ``tests/unit/test_cli_names.py`` pins every copy
equal to it.
"""

from __future__ import annotations

# == projections.DIMENSIONS (projections/usage.py)
DIMENSIONS: tuple[str, ...] = ("site", "tenant", "campaign", "class")
# == tuple(projections.PROJECTIONS) (projections/runner.py), in its order
PROJECTION_NAMES: tuple[str, ...] = ("status", "usage", "point_in_time")
# == seatledger.vendor.reports.BILLING_FORMATS
BILLING_FORMATS: tuple[str, ...] = ("table", "csv", "json", "html")
# == seatledger.vendor.reports.EXPIRY_WINDOW_DAYS
EXPIRY_WINDOW_DAYS = 60
# == ledger.GracePolicy().grace_seconds and .rearm_seconds (ledger/domain/values.py)
DEFAULT_GRACE_SECONDS = 48 * 3600
DEFAULT_REARM_SECONDS = 30 * 86400
