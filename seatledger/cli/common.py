"""What every command group shares: argument types, opening the ledger for one command.

The ledger and the configuration are imported where they are used, not here: every group
imports this module, and ``seatledger seat`` (run per agent log-on) must start without them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from datetime import datetime

    from ledger import LedgerApp
    from seatledger.config.settings import Config

Command = Callable[[argparse.Namespace], int]
Add = Callable[[Any, str, Command, str], argparse.ArgumentParser]


def limits_arg(text: str) -> dict[str, int]:
    from ledger import parse_limits

    try:
        return parse_limits(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def duration_arg(text: str) -> int:
    from ledger import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def date_arg(text: str) -> datetime:
    from datetime import UTC, datetime

    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad date {text!r}: use YYYY-MM-DD or an ISO 8601 timestamp") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def optional_int_arg(text: str) -> int | None:
    if text.lower() in ("none", "off", ""):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def fmt_limits(limits: dict[str, int]) -> str:
    from ledger import AGENT_CLASSES

    return ",".join(f"{c}={limits[c]}" for c in AGENT_CLASSES if c in limits)


def config_for(args: argparse.Namespace) -> Config:
    """The configuration of the data directory the command names."""
    from seatledger.config.settings import data_dir_from, load_config

    return load_config(data_dir_from(args.data_dir))


class ledger_for:
    """Open the data directory's ledger for one command and close it after."""

    def __init__(self, args: argparse.Namespace, *, read_only: bool = False):
        from seatledger.config.settings import data_dir_from, load_config

        self.config = load_config(data_dir_from(args.data_dir))
        self.read_only = read_only

    def __enter__(self) -> LedgerApp:
        from seatledger.config.store import open_ledger

        self.app = open_ledger(self.config, read_only=self.read_only)
        return self.app

    def __exit__(self, *exc: object) -> None:
        self.app.close()


def add_common(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    for action in common._actions:
        parser._add_action(action)
