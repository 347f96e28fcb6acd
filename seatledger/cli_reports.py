"""Command-line commands over the read models (status, reports, point-in-time audit)."""

from __future__ import annotations

from typing import Any


def register(sub: Any, add: Any, audit_sub: Any) -> None:
    """Add this module's commands to the parser (see seatledger.cli.build_parser)."""
