"""``seatledger storage``: what the ledger costs on disk, and per agent over six months."""

from __future__ import annotations

from typing import Any

from ledger import LedgerApp
from ledger.persistence.store import sqlite_path
from seatledger.config.settings import Config

SIX_MONTHS_DAYS = 182
VENDOR_BUDGET_MB = 120


def store_bytes(app: LedgerApp) -> int:
    """Bytes the store occupies: the SQLite file and its WAL, or the PostgreSQL tables."""
    path = sqlite_path(app.url)
    if path is not None:
        return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
                   if p.exists())
    with app.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS n FROM pg_class c "
            "JOIN pg_namespace s ON s.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND s.nspname = current_schema()"
        )
        return int(curs.fetchone()["n"])


def measure(config: Config, app: LedgerApp) -> dict[str, Any]:
    used = store_bytes(app)
    if config.layout.checkpoint.exists():
        used += config.layout.checkpoint.stat().st_size
    events = app.max_id()
    per_event = used / events if events else 0.0
    per_day = config.events_per_agent_per_day
    mb = per_event * per_day * SIX_MONTHS_DAYS / 1e6
    return {
        "store": app.url.split("@")[-1],
        "bytes": used,
        "events": events,
        "bytes_per_event": round(per_event, 1),
        "events_per_agent_per_day": per_day,
        "days": SIX_MONTHS_DAYS,
        "mb_per_agent_6_months": round(mb, 4),
        "vendor_budget_mb": VENDOR_BUDGET_MB,
    }
