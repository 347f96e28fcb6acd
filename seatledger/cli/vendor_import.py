"""``seatledger vendor`` commands: see register()."""

from __future__ import annotations

from typing import Any


def register(vsub: Any, vadd: Any) -> None:
    """Add this module's vendor commands (``vadd(vsub, name, fn, help)`` gives a parser with
    --vendor-dir, --data-dir and --json)."""
