"""The vendor's store: its customers and the licences it issued (the registry).

One SQLAlchemy database for everything the vendor keeps: SQLite file (0600) by default,
PostgreSQL by URL. The registry's tables are here; the imported exports and the analytics
(``seatledger.vendor`` import and report modules) add their own tables to :data:`metadata`.

Serials only grow per customer: the next one is allocated inside the transaction that
records the licence, and (customer, serial) is the primary key.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from exporters.envelope import public_key_line
from ledger.persistence.schema_lock import lock_schema
from seatledger.config.licence_file import SignedLicence
from seatledger.vendor.home import VendorConfig

metadata = sa.MetaData()

customers = sa.Table(
    "vendor_customers", metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("added_at", sa.String(40), nullable=False),
)

licences = sa.Table(
    "vendor_licences", metadata,
    sa.Column("customer", sa.String(200), sa.ForeignKey("vendor_customers.name"),
              primary_key=True),
    sa.Column("serial", sa.Integer, primary_key=True),
    sa.Column("licence_id", sa.String(100), nullable=False),
    sa.Column("issued_at", sa.String(40), nullable=False),
    sa.Column("expires_at", sa.String(40), nullable=False),
    sa.Column("master_origin", sa.String(200), nullable=False),
    sa.Column("master_key", sa.String(80), nullable=False),  # sha256:<hex> of signing key
    sa.Column("export_key", sa.Text, nullable=False),  # the master's minisign public key line
    sa.Column("limits", sa.String(200), nullable=False),  # PRED=150,ACD=50
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("file", sa.Text, nullable=False),
)

__all__ = ["CustomerExistsError", "IssuedLicence", "RegistryError", "VendorStore",
           "customers", "engine_url", "licences", "metadata"]


class RegistryError(Exception):
    """The registry refused: an unknown customer, a duplicate one, an unusable store."""


class CustomerExistsError(RegistryError):
    pass


@attrs.frozen
class IssuedLicence:
    """One row of the registry."""

    customer: str
    serial: int
    licence_id: str
    issued_at: str
    expires_at: str
    master_origin: str
    master_key: str
    export_key: str
    limits: str
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def engine_url(url: str) -> str:
    """SQLAlchemy's URL for ours: PostgreSQL through psycopg 3."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class VendorStore:
    """The vendor's database. Open with :meth:`open`; close when done."""

    def __init__(self, config: VendorConfig, engine: Engine):
        self.config = config
        self.engine = engine

    @classmethod
    def open(cls, config: VendorConfig, *, create: bool = False) -> VendorStore:
        """Raises RegistryError if the store is missing (and not ``create``) or unusable."""
        url = engine_url(config.store_url)
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///"):]
            if not os.path.exists(path):
                if not create:
                    raise RegistryError(f"the vendor's store {path} is missing: restore it "
                                        "from a backup (nothing was created)")
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            engine = sa.create_engine(url)
            with engine.begin() as conn:  # an import and the web server may start together
                lock_schema(conn)
                metadata.create_all(conn)
        except sa.exc.SQLAlchemyError as e:
            raise RegistryError(f"cannot open the vendor's store: {str(e).splitlines()[0]}") from None
        return cls(config, engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> VendorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # ------------------------------------------------------------ customers
    def add_customer(self, name: str) -> None:
        name = name.strip()
        if not name or len(name) > 200 or any(ch in name for ch in "\n\r\t"):
            raise RegistryError(f"bad customer name {name!r}: one line, at most 200 characters")
        with self.transaction() as conn:
            if conn.execute(sa.select(customers.c.name).where(customers.c.name == name)).first():
                raise CustomerExistsError(f"customer {name!r} already exists")
            conn.execute(customers.insert().values(name=name, added_at=_now()))

    def customer_names(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(customers.c.name)
                                               .order_by(customers.c.name))]

    def has_customer(self, name: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(customers.c.name)
                                .where(customers.c.name == name)).first() is not None

    # ------------------------------------------------------------ licences
    def next_serial(self, conn: Connection, customer: str) -> int:
        last = conn.execute(sa.select(sa.func.max(licences.c.serial))
                            .where(licences.c.customer == customer)).scalar()
        return int(last or 0) + 1

    def record_licence(self, conn: Connection, signed: SignedLicence, export_key: str) -> None:
        """Record an issued licence (in the caller's transaction, which allocated its serial)."""
        t = signed.terms
        conn.execute(licences.insert().values(
            customer=t.customer, serial=t.serial, licence_id=t.licence_id,
            issued_at=t.issued_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            expires_at=t.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            master_origin=t.master_origin, master_key=t.master_key,
            export_key=public_key_line(export_key),
            limits=",".join(f"{c}={n}" for c, n in t.limits.items()),
            sha256=signed.sha256, file=signed.text))

    def issued(self, customer: str | None = None) -> list[IssuedLicence]:
        query = sa.select(*[licences.c[f.name] for f in attrs.fields(IssuedLicence)])
        if customer is not None:
            query = query.where(licences.c.customer == customer)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(licences.c.customer, licences.c.serial))
            return [IssuedLicence(*row) for row in rows]

    def issued_file(self, sha256: str) -> str | None:
        """The licence file the registry issued with this SHA-256, if it did."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(licences.c.file)
                                .where(licences.c.sha256 == sha256)).scalar()

    def customer_for_export_key(self, export_key: str) -> str | None:
        """The customer whose master signs exports with this minisign key, if any licence the
        vendor issued names it."""
        line = public_key_line(export_key)
        with self.engine.connect() as conn:
            return conn.execute(sa.select(licences.c.customer)
                                .where(licences.c.export_key == line).limit(1)).scalar()
