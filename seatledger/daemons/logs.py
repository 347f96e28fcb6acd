"""How the daemons log: ``text`` (Python's plain lines, warnings and worse, as before) or
``json``: one JSON object a line on stderr, from INFO up, for a log collector.

A JSON line holds ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` (the message),
the fields a call passed with ``extra=`` (``site``, ``channel``, ``kind``, ...), and
``error`` with the traceback when one was logged.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

LOG_FORMATS = ("text", "json")

# What every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(log_format: str) -> None:
    """Set up the ``seatledger`` loggers for a daemon; ``text`` leaves Python's default."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"unknown log format {log_format!r}")
    if log_format == "text":
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("seatledger")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging"]
