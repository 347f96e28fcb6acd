"""The command line: parsing, output and exit codes only (one module per command group)."""

from seatledger.cli.main import main

__all__ = ["main"]
