"""Abuse findings: the vendor's own events, and the watchlist derived from them.

Theory of operation. Every finding opened and every acknowledgement is one row of the
append-only ``vendor_events`` table, hash-chained: each row's ``hash`` is the SHA-256 of the
previous row's hash and the row's canonical JSON, so a row changed, removed or reordered
afterwards breaks :meth:`Findings.verify_chain`. ``vendor_findings`` is the read model the
watchlist queries, kept in the same transaction as the events it is derived from (and
rebuildable from them). A finding is open until someone acknowledges it.

Writers take the chain's head row first (an UPDATE in SQLite, which takes the database's
write lock; a row lock in PostgreSQL), so two writers cannot both extend the chain from the
same head. Each finding carries a ``key`` naming the fact it reports (a day, a record, a
manifest): the same fact is never opened twice, so every import run may look for it again.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.persistence.codec import FIELD_NAMES
from seatledger.vendor.registry import RegistryError, metadata

__all__ = ["SEVERITY", "WATCHED_TYPES", "DaySignals", "Finding", "FindingError", "Findings",
           "Kind", "NewFinding", "Severity", "events", "findings", "iso", "worth_decoding"]


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    SERIOUS = 3
    CRITICAL = 4


class Kind(enum.StrEnum):
    """What a finding reports."""

    UNISSUED_LICENCE = "unissued_licence"  # a licence event the registry did not issue
    FORK = "fork"  # a day that does not continue the billed chain (a restored backup)
    UNKNOWN_KEY = "unknown_key"  # an export signed by a key no issued licence names
    INVALID_EXPORT = "invalid_export"  # signed by a customer's key, but fails verification
    KEY_CHANGED = "key_changed"  # the master's export or checkpoint key changed
    MISSING_DAY = "missing_day"  # no export of a day, 36 hours after it ended
    LATE_DAY = "late_day"  # an export that arrived more than 36 hours after its day ended
    EXPORT_OBLIGATION = "export_obligation"  # ExportOverdue, or more days missing than tolerated
    CLOCK_STEP_BACK = "clock_step_back"  # the master's wall clock was set back
    OFFLINE_OVERUSE = "offline_overuse"  # seats granted offline beyond the limit
    GRACE_OPENED = "grace_opened"  # over-use started: a grace window opened
    ENFORCEMENT = "enforcement"  # grace expired and the limit is enforced
    REFUSED_LICENCE = "refused_licence"  # the master refused a licence file: edited or forged
    HOURS_OVERDRAWN = "hours_overdrawn"  # offline use drew on an hours licence with none left


# One place for how serious each kind is.
SEVERITY: dict[Kind, Severity] = {
    Kind.UNISSUED_LICENCE: Severity.CRITICAL,
    Kind.FORK: Severity.CRITICAL,
    Kind.UNKNOWN_KEY: Severity.SERIOUS,
    Kind.INVALID_EXPORT: Severity.SERIOUS,
    Kind.KEY_CHANGED: Severity.SERIOUS,
    Kind.EXPORT_OBLIGATION: Severity.SERIOUS,
    Kind.CLOCK_STEP_BACK: Severity.SERIOUS,
    Kind.REFUSED_LICENCE: Severity.SERIOUS,
    Kind.HOURS_OVERDRAWN: Severity.WARNING,
    Kind.MISSING_DAY: Severity.WARNING,
    Kind.OFFLINE_OVERUSE: Severity.WARNING,
    Kind.ENFORCEMENT: Severity.WARNING,
    Kind.LATE_DAY: Severity.INFO,
    Kind.GRACE_OPENED: Severity.INFO,
}

OPENED = "finding_opened"
ACKNOWLEDGED = "finding_acknowledged"
_GENESIS = "0" * 64

events = sa.Table(
    "vendor_events", metadata,
    sa.Column("position", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("customer", sa.String(200), nullable=False),
    sa.Column("data", sa.Text, nullable=False),  # canonical JSON
    sa.Column("hash", sa.String(64), nullable=False),
)

# The chain's head: one row, the last position and hash (the lock writers take first).
head = sa.Table(
    "vendor_event_head", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

findings = sa.Table(
    "vendor_findings", metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=False),  # the position of the event that opened it
    sa.Column("key", sa.String(400), nullable=False, unique=True),
    sa.Column("customer", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("severity", sa.Integer, nullable=False),
    sa.Column("day", sa.String(10)),
    sa.Column("opened_at", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
    sa.Column("acked_at", sa.String(40)),
    sa.Column("ack_note", sa.Text),
    sa.Index("vendor_findings_watch", "acked_at", "severity", "opened_at"),
)


class FindingError(RegistryError):
    """A finding cannot be acknowledged (unknown, already acknowledged, no note), or the
    findings' event chain does not verify."""


def iso(when: datetime) -> str:
    """An aware time as ISO 8601 UTC with a ``Z`` (seconds)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.frozen
class Finding:
    """One abuse signal, open until acknowledged."""

    id: int
    customer: str
    kind: str
    severity: int  # 1 info, 2 warning, 3 serious, 4 critical
    day: str | None
    opened_at: str  # ISO UTC
    detail: str
    acked_at: str | None
    ack_note: str | None

    @property
    def is_open(self) -> bool:
        return self.acked_at is None

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class NewFinding:
    """A finding to open: ``key`` names the fact, so the same fact is opened only once."""

    customer: str
    kind: Kind
    day: str | None
    detail: str
    key: str

    @classmethod
    def of(cls, customer: str, kind: Kind, day: str | None, detail: str,
           fact: str = "") -> NewFinding:
        """A finding about ``fact`` (default: the day) of ``customer``."""
        return cls(customer, kind, day, detail, f"{kind}|{customer}|{day or ''}|{fact}")

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]


def _canonical(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _chain_hash(previous: str, position: int, at: str, type_: str, customer: str,
                data: str) -> str:
    body = _canonical({"position": position, "at": at, "type": type_, "customer": customer,
                       "data": data})
    return hashlib.sha256(f"{previous}\n{body}".encode()).hexdigest()


def _finding(row: Any) -> Finding:
    return Finding(int(row.id), row.customer, row.kind, int(row.severity), row.day,
                   row.opened_at, row.detail, row.acked_at, row.ack_note)


class _Chain:
    """Appends events after taking the head (see the module docstring)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        conn.execute(head.update().where(head.c.id == 1).values(position=head.c.position))
        row = conn.execute(sa.select(head.c.position, head.c.hash)
                           .where(head.c.id == 1).with_for_update()).first()
        if row is None:
            conn.execute(head.insert().values(id=1, position=0, hash=_GENESIS))
            self.position, self.hash = 0, _GENESIS
        else:
            self.position, self.hash = int(row.position), str(row.hash)

    def append(self, at: str, type_: str, customer: str, data: dict[str, Any]) -> int:
        position = self.position + 1
        text = _canonical(data)
        digest = _chain_hash(self.hash, position, at, type_, customer, text)
        self._conn.execute(events.insert().values(position=position, at=at, type=type_,
                                                  customer=customer, data=text, hash=digest))
        self.position, self.hash = position, digest
        return position

    def close(self) -> None:
        self._conn.execute(head.update().where(head.c.id == 1)
                           .values(position=self.position, hash=self.hash))


class Findings:
    """The vendor's findings: opened by the import, acknowledged by people."""

    def __init__(self, engine: Engine):
        self.engine = engine

    # ------------------------------------------------------------ reading
    def watchlist(self) -> list[Finding]:
        """The open findings, most severe first, then most recent first."""
        query = (sa.select(findings).where(findings.c.acked_at.is_(None))
                 .order_by(findings.c.severity.desc(), findings.c.opened_at.desc(),
                           findings.c.id.desc()))
        with self.engine.connect() as conn:
            return [_finding(row) for row in conn.execute(query)]

    def all(self, customer: str | None = None) -> list[Finding]:
        """Every finding (open or acknowledged), in the order they were opened."""
        query = sa.select(findings)
        if customer is not None:
            query = query.where(findings.c.customer == customer)
        with self.engine.connect() as conn:
            return [_finding(row) for row in conn.execute(query.order_by(findings.c.id))]

    def get(self, finding_id: int) -> Finding | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(findings).where(findings.c.id == finding_id)).first()
        return None if row is None else _finding(row)

    # ------------------------------------------------------------ writing
    def open(self, conn: Connection, new: Iterable[NewFinding], now: datetime) -> list[Finding]:
        """Open the findings of ``new`` not opened before (by key), in the caller's
        transaction. Returns those opened now."""
        new = list(new)
        if not new:
            return []
        keys = [f.key for f in new]
        known: set[str] = set()
        for start in range(0, len(keys), 500):
            known.update(conn.execute(sa.select(findings.c.key)
                                      .where(findings.c.key.in_(keys[start:start + 500])))
                         .scalars())
        fresh: list[NewFinding] = []
        for f in new:
            if f.key not in known:
                known.add(f.key)
                fresh.append(f)
        if not fresh:
            return []
        at = iso(now)
        chain = _Chain(conn)
        opened = []
        for f in fresh:
            data = {"key": f.key, "kind": str(f.kind), "severity": int(f.severity),
                    "day": f.day, "detail": f.detail}
            position = chain.append(at, OPENED, f.customer, data)
            conn.execute(findings.insert().values(
                id=position, key=f.key, customer=f.customer, kind=str(f.kind),
                severity=int(f.severity), day=f.day, opened_at=at, detail=f.detail))
            opened.append(Finding(position, f.customer, str(f.kind), int(f.severity), f.day,
                                  at, f.detail, None, None))
        chain.close()
        return opened

    def ack(self, finding_id: int, note: str, *, now: datetime | None = None) -> Finding:
        """Acknowledge an open finding with a note (recorded as an event).

        Raises:
            FindingError: no such finding, it is acknowledged already, or the note is empty.
        """
        note = note.strip()
        if not note:
            raise FindingError("acknowledging a finding needs a note (--note TEXT)")
        at = iso(now or datetime.now(UTC))
        with self.engine.begin() as conn:
            chain = _Chain(conn)
            row = conn.execute(sa.select(findings).where(findings.c.id == finding_id)).first()
            if row is None:
                raise FindingError(f"no finding {finding_id}")
            if row.acked_at is not None:
                raise FindingError(f"finding {finding_id} was acknowledged already, at "
                                   f"{row.acked_at}: {row.ack_note}")
            chain.append(at, ACKNOWLEDGED, row.customer, {"finding": finding_id, "note": note})
            chain.close()
            conn.execute(findings.update().where(findings.c.id == finding_id)
                         .values(acked_at=at, ack_note=note))
            return attrs.evolve(_finding(row), acked_at=at, ack_note=note)

    # ------------------------------------------------------------ audit
    def verify_chain(self) -> int:
        """Check every event's hash link and that the findings are what the events say.
        Returns the number of events.

        Raises:
            FindingError: the first event whose hash does not follow, or a finding that
                differs from its events.
        """
        previous = _GENESIS
        derived: dict[int, dict[str, Any]] = {}
        count = 0
        with self.engine.connect() as conn:
            for row in conn.execute(sa.select(events).order_by(events.c.position)):
                count += 1
                if row.position != count:
                    raise FindingError(f"vendor event {count} is missing (next is "
                                       f"{row.position})")
                if _chain_hash(previous, row.position, row.at, row.type, row.customer,
                               row.data) != row.hash:
                    raise FindingError(f"vendor event {row.position} was altered (its hash "
                                       "does not follow)")
                previous = row.hash
                data = json.loads(row.data)
                if row.type == OPENED:
                    derived[row.position] = {
                        "key": data["key"], "customer": row.customer, "kind": data["kind"],
                        "severity": data["severity"], "day": data["day"],
                        "opened_at": row.at, "detail": data["detail"], "acked_at": None,
                        "ack_note": None}
                elif row.type == ACKNOWLEDGED:
                    derived[int(data["finding"])].update(acked_at=row.at, ack_note=data["note"])
            top = conn.execute(sa.select(head.c.position, head.c.hash)).first()
            if count and (top is None or (int(top.position), top.hash) != (count, previous)):
                raise FindingError("the vendor events end before the recorded head: the tail "
                                   "was removed")
            stored = {int(r.id): r for r in conn.execute(sa.select(findings))}
        if set(stored) != set(derived):
            raise FindingError("the findings differ from the vendor events that opened them")
        for fid, want in derived.items():
            row = stored[fid]
            if any(getattr(row, name) != value for name, value in want.items()):
                raise FindingError(f"finding {fid} differs from its vendor events")
        return count


# ---------------------------------------------------------------- what a history reveals
#: Event types whose records are decoded to look for findings; every other record is only
#: hashed (decoding each of a day's records would cost more than importing them).
WATCHED_TYPES = frozenset({
    "LicenceIssued", "LicenceAmended", "LicenceInstalled", "ExportOverdue", "ClockStepped",
    "SeatGranted", "OveruseStarted", "EnforcementStarted", "LicenceRefused", "HoursOverdrawn",
})
# Old-style terms the operator set itself: by definition not issued by the vendor.
_SELF_ISSUED = frozenset({"LicenceIssued", "LicenceAmended"})
# A plain (uncompressed) payload can hold offline=True and overuse=True only if it contains
# each field's one-byte code followed by MessagePack's true.
_OFFLINE_TRUE = bytes([FIELD_NAMES.index("offline"), 0xC3])
_OVERUSE_TRUE = bytes([FIELD_NAMES.index("overuse"), 0xC3])


def worth_decoding(type_: str, payload: bytes) -> bool:
    """Whether a record of ``type_`` may give a finding, judged from its bytes alone: a
    SeatGranted only when it can be offline over-use (most seat grants are not)."""
    if type_ not in WATCHED_TYPES:
        return False
    if type_ == "SeatGranted" and payload[:1] == b"\x00":
        return _OFFLINE_TRUE in payload and _OVERUSE_TRUE in payload
    return True


def _stamp(value: object) -> str:
    return iso(value) if isinstance(value, datetime) else str(value)


class DaySignals:
    """The findings one customer's day of records gives. Feed every record
    :func:`worth_decoding` picked, with its decoded state (field name -> value), to
    :meth:`observe`; then take :meth:`findings`.

    ``issued_to(sha256)`` names the customer the registry issued a licence file to, or None.
    """

    def __init__(self, customer: str, day: str, issued_to: Callable[[str], str | None]):
        self.customer = customer
        self.day = day
        self._issued_to = issued_to
        self._found: list[NewFinding] = []
        self._offline: list[int] = []
        self._offline_sites: set[str] = set()
        self._windows: set[tuple[str, str]] = set()  # (pool, deadline) of windows reported

    def _add(self, kind: Kind, record_id: int, detail: str) -> None:
        self._found.append(NewFinding.of(self.customer, kind, self.day,
                                         f"record {record_id}: {detail}", f"record {record_id}"))

    def observe(self, record_id: int, type_: str, state: Mapping[str, Any]) -> None:
        get = state.get
        if type_ in _SELF_ISSUED:
            self._add(Kind.UNISSUED_LICENCE, record_id,
                      f"{type_} ({get('licence_id') or 'terms'} for {get('customer') or '?'}): "
                      "the operator set its own licence terms; the vendor's registry did not "
                      "issue them")
        elif type_ == "LicenceInstalled":
            sha = str(get("sha256") or "")
            holder = self._issued_to(sha)
            if holder is None:
                self._add(Kind.UNISSUED_LICENCE, record_id,
                          f"LicenceInstalled {get('licence_id') or '?'} serial "
                          f"{get('serial') or '?'}: licence file sha256 {sha[:16]}... is not "
                          "in the registry (a forged or self-made licence)")
            elif holder != self.customer:
                self._add(Kind.UNISSUED_LICENCE, record_id,
                          f"LicenceInstalled {get('licence_id') or '?'}: the registry issued "
                          f"this licence file to {holder!r}, not to {self.customer!r}")
        elif type_ == "ExportOverdue":
            self._add(Kind.EXPORT_OBLIGATION, record_id,
                      f"the master recorded ExportOverdue: {get('days')} days without a "
                      f"delivered export ({get('tolerated')} tolerated)")
        elif type_ == "ClockStepped":
            wall, recorded = get("wall_clock"), get("recorded")
            if (isinstance(wall, datetime) and isinstance(recorded, datetime)
                    and wall < recorded):
                self._add(Kind.CLOCK_STEP_BACK, record_id,
                          f"the wall clock read {_stamp(wall)} while the ledger's time was "
                          f"{_stamp(recorded)} (set back by {recorded - wall})")
        elif type_ == "SeatGranted":
            if get("offline") is True and get("overuse") is True:
                self._offline.append(record_id)
                self._offline_sites.add(str(get("site")))
        elif type_ == "LicenceRefused":
            reason = str(get("reason") or "?")
            what = ("an edited, forged or self-made licence"
                    if reason == "signature" else "a licence it may not install")
            self._add(Kind.REFUSED_LICENCE, record_id,
                      f"the master refused {what} (file sha256 {str(get('sha256'))[:16]}...): "
                      f"{get('detail')}")
        elif type_ == "HoursOverdrawn":
            self._add(Kind.HOURS_OVERDRAWN, record_id,
                      f"site {get('site')}'s offline use drew on the {get('agent_class')} hours "
                      f"with none left ({int(get('left_us') or 0) / 3.6e9:.2f} h left)")
        elif type_ == "OveruseStarted":
            window = (str(get("pool")), _stamp(get("deadline")))
            if window in self._windows:
                return  # over-use starting again inside a window already reported
            self._windows.add(window)
            self._add(Kind.GRACE_OPENED, record_id,
                      f"over-use of {get('pool')}: {get('in_use')} in use, limit "
                      f"{get('limit')}; grace until {_stamp(get('deadline'))}")
        elif type_ == "EnforcementStarted":
            self._add(Kind.ENFORCEMENT, record_id,
                      f"grace expired for {get('pool')}: the limit {get('limit')} is enforced")

    def findings(self) -> list[NewFinding]:
        found = list(self._found)
        if self._offline:
            found.append(NewFinding.of(
                self.customer, Kind.OFFLINE_OVERUSE, self.day,
                f"{len(self._offline)} seat(s) granted offline beyond the limit at "
                f"{', '.join(sorted(self._offline_sites))} (records {self._offline[0]}.."
                f"{self._offline[-1]})"))
        return found
