"""``seatledger storage``: what the ledger costs on disk, and per agent over six months."""

from __future__ import annotations

from typing import Any

from ledger import LedgerApp
from ledger.persistence.store import sqlite_path
from projections import VIEWS_SCHEMA, views_url
from seatledger.config.settings import Config

SIX_MONTHS_DAYS = 182
VENDOR_BUDGET_MB = 120


def store_bytes(app: LedgerApp) -> int:
    """Bytes the store and its read models occupy: the SQLite files and their WALs, or the
    PostgreSQL tables of the store's schema and of the views'."""
    path = sqlite_path(app.url)
    if path is not None:
        views = sqlite_path(views_url(app.url))
        files = [path, *([views] if views is not None else [])]
        return sum(p.stat().st_size for f in files
                   for p in (f, f.with_name(f.name + "-wal")) if p.exists())
    with app.recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        curs.execute(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) AS n FROM pg_class c "
            "JOIN pg_namespace s ON s.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND s.nspname IN (current_schema(), %s)", (VIEWS_SCHEMA,)
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
