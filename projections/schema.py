"""The view tables, in one place: SQLAlchemy Core, one MetaData, every name prefixed ``view_``.

They live beside the event store (a file of their own next to the SQLite store, or the
schema ``seatledger_views`` of its PostgreSQL database: :func:`projections.engine.views_url`)
and are copied with it, so what identifies anyone — sites, users, tenants, campaigns, the
customer — is stored sealed (``Label`` columns, :mod:`projections.labels`). Instants are
epoch microseconds (:mod:`projections.timestamps`); hours and days are whole hours since the
epoch, UTC.

Each read model owns its tables (``TABLES_BY_PROJECTION``) so that one can be dropped and
rebuilt without touching the others. ``view_tracking`` holds, per read model, the position
(notification id) up to which its tables are complete; it is updated in the same transaction
as the tables it describes.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

METADATA = MetaData()

# SQLite: a table keyed by text is stored once, in its key's order (sqlite_with_rowid=False),
# not as a rowid table plus an index; and an integer key must be spelled INTEGER to be the
# rowid itself (RowId). Both halve the b-tree work of the replay. PostgreSQL ignores the
# first and gets BIGINT from the second.
RowId = BigInteger().with_variant(Integer(), "sqlite")

# Sites, users, tenants, campaigns, the customer, and free text that names them are stored
# sealed (:mod:`projections.labels`): deterministic, so they still match and group.
Label = LargeBinary()

tracking = Table(
    "view_tracking",
    METADATA,
    Column("name", String(32), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("event_us", BigInteger),  # record time of the event at ``position``
    Column("schema", String(16), nullable=False),  # fingerprint of the model's tables
    sqlite_with_rowid=False,
)

# ------------------------------------------------------------------ live status
status_licence = Table(
    "view_status_licence",
    METADATA,
    Column("id", Integer, primary_key=True),  # always 1: a store holds one licence
    Column("licence_id", String(64), nullable=False),
    Column("customer", Label, nullable=False),
    Column("limits", Text, nullable=False),  # JSON {class: limit}
    Column("total_pred_acd", Integer),
    Column("expires_us", BigInteger, nullable=False),
    Column("expired", Boolean, nullable=False),
    Column("grace_seconds", Integer, nullable=False),
    Column("rearm_seconds", Integer, nullable=False),
    Column("ceiling_percent", Integer),
    Column("cutoff_seconds", Integer, nullable=False),
    Column("last_event_us", BigInteger, nullable=False),
    Column("licensed", Boolean, nullable=False),  # terms in force; otherwise trial mode
    Column("serial", Integer, nullable=False),  # the installed licence's (0: none)
    Column("notice", Text, nullable=False),  # the latest licence or export warning
    Column("export_overdue", Boolean, nullable=False),
)

status_pools = Table(
    "view_status_pools",
    METADATA,
    Column("pool", String(16), primary_key=True),
    Column("limit", Integer, nullable=False),
    Column("in_use", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # available | open | spent
    Column("deadline_us", BigInteger),
    Column("opened_us", BigInteger),
    Column("closed_us", BigInteger),
    Column("overuse", Boolean, nullable=False),
    Column("severity", Integer, nullable=False),
    Column("enforced", Boolean, nullable=False),
    sqlite_with_rowid=False,
)

status_sites = Table(
    "view_status_sites",
    METADATA,
    Column("site", Label, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("since_us", BigInteger),
    Column("last_seen_us", BigInteger),
    Column("seats", Integer, nullable=False),
    Column("seats_by_class", Text, nullable=False),  # JSON {class: seats}
    Column("local_limits", Text, nullable=False),  # JSON {class: limit}
    sqlite_with_rowid=False,
)

# Agent-hours per class with an hours allowance: the balance as of ``as_of_us`` (see
# ledger.domain.hours.Balance, whose fields these are).
status_hours = Table(
    "view_status_hours",
    METADATA,
    Column("agent_class", String(16), primary_key=True),
    Column("as_of_us", BigInteger, nullable=False),
    Column("left_us", BigInteger, nullable=False),  # seat-microseconds; negative: overdrawn
    Column("held", Integer, nullable=False),
    Column("base_us", BigInteger, nullable=False),
    Column("added_us", BigInteger, nullable=False),
    Column("notified", Integer, nullable=False),
    Column("exhausted", Boolean, nullable=False),
    sqlite_with_rowid=False,
)

# ------------------------------------------------------------------ usage
# One row per (dimension, key, class, hour). dim is site | tenant | campaign | class; for
# dim "class" the key is the class, or "PRED+ACD" for the two counted together. The row whose
# ``open`` is true is the group's current hour and also carries its running state (the
# counts at ``end_us``), from which the runner resumes and a report extends to "now".
usage_hours = Table(
    "view_usage_hours",
    METADATA,
    Column("dim", String(16), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("key", Label, primary_key=True),
    Column("agent_class", String(16), primary_key=True),
    Column("agent_us", BigInteger, nullable=False),  # seat-microseconds held
    Column("overuse_agent_us", BigInteger, nullable=False),  # ... by seats granted as over-use
    Column("over_limit_us", BigInteger, nullable=False),  # time in_use > limit (class rows)
    Column("excess_agent_us", BigInteger, nullable=False),  # seat time above the limit (class)
    Column("peak", Integer, nullable=False),
    Column("peak_us", BigInteger),  # first instant the peak was reached
    Column("grants", Integer, nullable=False),
    Column("overuse_grants", Integer, nullable=False),
    Column("offline_grants", Integer, nullable=False),
    Column("releases", Integer, nullable=False),
    Column("limit", Integer),  # the limit at the end of the hour (class rows)
    Column("open", Boolean, nullable=False),
    Column("end_us", BigInteger, nullable=False),
    Column("end_count", Integer, nullable=False),
    Column("end_overuse_count", Integer, nullable=False),
    sqlite_with_rowid=False,
)
Index("view_usage_hours_open", usage_hours.c.open, usage_hours.c.dim)

usage_refusals = Table(
    "view_usage_refusals",
    METADATA,
    Column("dim", String(16), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("key", Label, primary_key=True),
    Column("agent_class", String(16), primary_key=True),
    Column("reason", String(32), primary_key=True),
    Column("count", Integer, nullable=False),
    sqlite_with_rowid=False,
)

# The seats held now, with the labels a release needs (a SeatReleased carries no tenant or
# campaign). Keyed by the grant's notification id, so that new rows go to the end of the
# table rather than anywhere in it. Only the usage projection reads it.
usage_held = Table(
    "view_usage_held",
    METADATA,
    Column("grant_id", RowId, primary_key=True),
    Column("site", Label, nullable=False),
    Column("user", Label, nullable=False),
    Column("agent_class", String(16), nullable=False),
    Column("tenant", Label, nullable=False),
    Column("campaign", Label, nullable=False),
    Column("overuse", Boolean, nullable=False),
)

# Agent-hours of each class with an hours allowance, per hour: the balance after the hour's
# last event (the fields of ledger.domain.hours.Balance) and the offline use charged in all
# so far. What a period granted, used and charged is the difference of these at its two
# ends; the class's latest row is also where the runner resumes.
usage_agent_hours = Table(
    "view_usage_agent_hours",
    METADATA,
    Column("agent_class", String(16), primary_key=True),
    Column("hour", BigInteger, primary_key=True),
    Column("as_of_us", BigInteger, nullable=False),
    Column("left_us", BigInteger, nullable=False),  # seat-microseconds; negative: overdrawn
    Column("held", Integer, nullable=False),
    Column("base_us", BigInteger, nullable=False),
    Column("added_us", BigInteger, nullable=False),
    Column("notified", Integer, nullable=False),
    Column("exhausted", Boolean, nullable=False),
    Column("charged_us", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# ------------------------------------------------------------------ point in time
# Every seat ever held: granted at, released at (NULL while held), with reasons. Times are
# when it happened (occurred_at), so offline seats appear at the time the site held them.
pit_seats = Table(
    "view_pit_seats",
    METADATA,
    Column("grant_id", RowId, primary_key=True),  # notification id of the grant
    Column("site", Label, nullable=False),
    Column("user", Label, nullable=False),
    Column("seat", Integer, nullable=False),
    Column("agent_class", String(16), nullable=False),
    Column("tenant", Label, nullable=False),
    Column("campaign", Label, nullable=False),
    Column("overuse", Boolean, nullable=False),
    Column("offline", Boolean, nullable=False),
    Column("granted_us", BigInteger, nullable=False),
    Column("recorded_us", BigInteger, nullable=False),
    Column("release_id", BigInteger),
    Column("released_us", BigInteger),
    Column("release_reason", String(32)),
    Column("release_offline", Boolean),
)
# No secondary index: each would cost the replay more than the rows themselves (random
# inserts), and neither query needs one badly. "Held at T" (granted <= T, not released by
# T) cannot be narrowed much by an index on either end; a user's history scans the table,
# which takes a fraction of a second even for a million-event store.

pit_refusals = Table(
    "view_pit_refusals",
    METADATA,
    Column("id", RowId, primary_key=True),  # notification id
    Column("at_us", BigInteger, nullable=False),
    Column("site", Label, nullable=False),
    Column("user", Label, nullable=False),
    Column("agent_class", String(16), nullable=False),
    Column("tenant", Label, nullable=False),
    Column("campaign", Label, nullable=False),
    Column("reason", String(32), nullable=False),
    Column("detail", Label, nullable=False),
)
Index("view_pit_refusals_user", pit_refusals.c.user, pit_refusals.c.at_us)

# Limit changes and grace transitions per pool: the context of a refusal, and the windows
# the HTML report shades. kind: limit | overuse_started | overuse_ended | notice |
# grace_expired | enforcement_started | grace_rearmed | licence_expired
pit_pool_events = Table(
    "view_pit_pool_events",
    METADATA,
    Column("id", RowId, primary_key=True),  # notification id * 8 + index within it
    Column("at_us", BigInteger, nullable=False),
    Column("pool", String(16), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("in_use", Integer),
    Column("limit", Integer),
    Column("deadline_us", BigInteger),
    Column("detail", Label, nullable=False),
)
Index("view_pit_pool_events_pool", pit_pool_events.c.pool, pit_pool_events.c.at_us)

# How labels are sealed (projections.labels). A new way of sealing them changes no DDL:
# bump this so that views written the old way are rebuilt.
LABELS_FORMAT = "labels: aes-siv 1"


def fingerprint(tables: tuple[Table, ...], dialect: Dialect, labels_check: str) -> str:
    """A short digest of the tables' definitions and of the key their labels are sealed
    with (``labels_check``, :attr:`projections.labels.Labels.check`): when it changes, the
    read model is rebuilt.

    Read models are disposable, so a new version of their tables needs no migration.
    """
    ddl = [str(CreateTable(t).compile(dialect=dialect)) for t in tables]
    ddl += [str(CreateIndex(i).compile(dialect=dialect))
            for t in tables for i in sorted(t.indexes, key=lambda i: str(i.name))]
    ddl += [LABELS_FORMAT, labels_check]
    return hashlib.sha256("\n".join(ddl).encode()).hexdigest()[:16]


TABLES_BY_PROJECTION: dict[str, tuple[Table, ...]] = {
    "status": (status_licence, status_pools, status_sites, status_hours),
    "usage": (usage_hours, usage_refusals, usage_held, usage_agent_hours),
    "point_in_time": (pit_seats, pit_refusals, pit_pool_events),
}
