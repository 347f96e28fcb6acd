"""Every customer's imported records in the vendor's store: one table, customer as a column.

A row is one record of one customer's ledger, exactly as that master exported it (its id,
originator, version and topic), with the plaintext payload sealed at rest by the vendor's
own key (AES-256-GCM bound to the customer and record id, as the master's store binds each
row). (customer, record_id) is the primary key, so a record is imported at most once.
``position`` is the store-wide order of arrival, which the analytics follow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.persistence.codec import RowCipher, decode_payload
from ledger.persistence.store import load_key_file
from seatledger.vendor.home import VendorConfig
from seatledger.vendor.registry import metadata

records = sa.Table(
    "vendor_records", metadata,
    sa.Column("position", sa.BigInteger().with_variant(sa.Integer, "sqlite"),
              primary_key=True, autoincrement=True),
    sa.Column("customer", sa.String(200), nullable=False),
    sa.Column("record_id", sa.BigInteger, nullable=False),
    sa.Column("day", sa.String(10), nullable=False),  # the export day it came in
    sa.Column("originator_id", sa.String(36), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.Column("topic", sa.String(200), nullable=False),
    sa.Column("sealed", sa.LargeBinary, nullable=False),
    sa.UniqueConstraint("customer", "record_id", name="vendor_records_once"),
)

_COLUMNS = ("customer", "record_id", "day", "originator_id", "version", "topic", "sealed")
_INSERT = f"INSERT INTO {records.name} ({', '.join(_COLUMNS)}) VALUES ({{}})"

__all__ = ["RecordSealer", "StoredRecord", "VendorRecords", "records"]


@attrs.frozen
class StoredRecord:
    """One imported record, opened."""

    position: int
    customer: str
    record_id: int
    day: str
    originator_id: UUID
    version: int
    topic: str
    payload: bytes

    def event(self) -> Any:
        """The domain event this record holds (the master's event class)."""
        return decode_payload(self.originator_id, self.version, self.topic, self.payload)


class RecordSealer:
    """Seals one customer's records for the store (AES-256-GCM under the vendor's store key,
    bound to customer, record id and topic). Holds only the key, so import workers can
    seal in parallel."""

    def __init__(self, key: bytes):
        self._cipher = RowCipher(key)

    def seal_rows(self, customer: str, day: str,
                  rows: Iterable[tuple[int, UUID, int, str, bytes]]) -> list[tuple[Any, ...]]:
        """``(record_id, originator_id, version, topic, payload)`` rows as store rows."""
        seal = self._cipher.seal
        prefix = f"{customer}\x00".encode()
        texts: dict[UUID, str] = {}
        topics: dict[str, bytes] = {}
        batch: list[tuple[Any, ...]] = []
        for rid, oid, version, topic, payload in rows:
            text = texts.get(oid)
            if text is None:
                text = texts[oid] = str(oid)
            encoded = topics.get(topic)
            if encoded is None:
                encoded = topics[topic] = topic.encode()
            batch.append((customer, rid, day, text, version, topic,
                          seal(payload, b"%s%d\x00%s" % (prefix, rid, encoded))))
        return batch


class VendorRecords:
    """Append and read customers' records, sealed with the vendor's store key."""

    def __init__(self, config: VendorConfig, engine: Engine):
        self.engine = engine
        self.key = load_key_file(config.layout.store_key)
        self._cipher = RowCipher(self.key)
        self.sealer = RecordSealer(self.key)

    @staticmethod
    def _aad(customer: str, record_id: int, topic: str) -> bytes:
        return f"{customer}\x00{record_id}\x00{topic}".encode()

    def append(self, conn: Connection, customer: str, day: str,
               rows: Iterable[tuple[int, UUID, int, str, bytes]]) -> int:
        """Insert ``(record_id, originator_id, version, topic, payload)`` rows for one
        customer's day, in the caller's transaction. Returns how many."""
        return self.insert_sealed(conn, self.sealer.seal_rows(customer, day, rows))

    @staticmethod
    def insert_sealed(conn: Connection, batch: Sequence[tuple[Any, ...]]) -> int:
        """Insert rows from :meth:`RecordSealer.seal_rows`, in the caller's transaction.

        Batches go to the driver directly (``executemany`` on SQLite, ``COPY`` on
        PostgreSQL): compiling one SQLAlchemy insert per row costs more than sealing it.
        """
        if not batch:
            return 0
        if conn.dialect.name == "postgresql":
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            with cursor.copy(f"COPY {records.name} ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
        elif conn.dialect.paramstyle == "qmark":
            conn.exec_driver_sql(_INSERT.format(", ".join("?" * len(_COLUMNS))), list(batch))
        else:
            conn.execute(records.insert(), [dict(zip(_COLUMNS, row, strict=True))
                                            for row in batch])
        return len(batch)

    def last_id(self, conn: Connection, customer: str) -> int:
        return int(conn.execute(sa.select(sa.func.max(records.c.record_id))
                                .where(records.c.customer == customer)).scalar() or 0)

    def read(self, *, after_position: int = 0, customer: str | None = None,
             limit: int | None = None) -> Iterator[StoredRecord]:
        """Records in order of arrival after ``after_position`` (optionally one customer's)."""
        query = sa.select(records).where(records.c.position > after_position)
        if customer is not None:
            query = query.where(records.c.customer == customer)
        query = query.order_by(records.c.position)
        if limit is not None:
            query = query.limit(limit)
        open_ = self._cipher.open
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                payload = open_(row.sealed, self._aad(row.customer, row.record_id, row.topic))
                yield StoredRecord(row.position, row.customer, row.record_id, row.day,
                                   UUID(row.originator_id), row.version, row.topic, payload)


def utc_day(value: datetime) -> str:
    return value.strftime("%Y-%m-%d")
