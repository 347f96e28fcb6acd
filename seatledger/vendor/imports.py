"""The vendor's import: every customer's daily exports, verified per customer, stored once.

Theory of operation. An import run looks at every manifest in the inbox folders (and the
folders of days still waiting from earlier runs). A manifest whose ``.minisig`` is not there
yet is an upload in progress and is left for the next run. For the others:

1. **Whose is it?** The key id in the manifest's minisign signature is looked up among the
   masters' export keys the registry's licences name. An unknown key is refused and listed
   (and reported once, as an ``unknown_key`` finding of customer ``?``); nothing of it is
   read further.
2. **Is it sound?** :class:`exporters.Verifier` checks the day with that customer's key:
   the manifest's signature, its counts, the signed checkpoint, the start frontier, the
   consistency proof, and the records file's hash and signature. A day that fails is
   refused (an ``invalid_export`` finding) and tried again on every run.
3. **Where does it go?** Per customer, days are taken in date order against the billed chain
   (``vendor_days`` with status ``imported``), whose tip is the last imported day:

   ======================================================  ==============================
   the day                                                  becomes
   ======================================================  ==============================
   its manifest is imported already                         (nothing: idempotent)
   follows a quarantined manifest                           quarantined (same branch)
   another manifest of that day, same tree size and root    duplicate (re-built; not billed)
   another manifest of that day, another tree               quarantined, ``fork`` finding
   starts from the empty tree, customer has a chain         quarantined, ``fork`` finding
   starts from the empty tree, customer has none            imported
   follows the tip: the tip's day, tree size and root       imported
   follows the tip's day, but another tree                  quarantined, ``fork`` finding
   follows a day after the tip                              waiting (until the gap fills)
   ======================================================  ==============================

   So the branch imported first stays the one billed. The chain is one of trees, not of
   manifest files: a master that lost its outbox builds a day again (age encryption is
   randomised, so the files differ), and that same history is not a fork.
4. **Import.** The records file is decrypted with the vendor's age identity and every
   record's Merkle leaf is appended to the start frontier: ids in sequence, recorded
   checkpoints signed by the log's key, the result exactly the signed root. Only records
   that can give a finding are decoded (:func:`seatledger.vendor.findings.worth_decoding`).
   The records (sealed with the vendor's key), the day's row and its findings are written in
   one transaction; the store's constraints ((customer, record id), one billed manifest per
   customer and day) make a record land at most once even if two runs race.

At the end of a run every customer with a chain is checked for days overdue: a day not
arrived 36 hours after it ended is missing, one that arrived later is late, and more days
missing at the tail than its licence tolerates breaches the export obligation.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import gzip
import hashlib
import itertools
import os
import time
import zlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from uuid import UUID

import attrs
import msgspec
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Connection, Engine

from exporters import Manifest, Verifier, VerifyError, decode_manifest
from exporters.chain import RecordFault, check_recorded_checkpoint, parse_verifier_key
from exporters.envelope import decrypt_export, public_key_line
from exporters.errors import EnvelopeError
from exporters.naming import MANIFEST_SUFFIX, parse_name
from exporters.proofs import frontier_from_hashes
from exporters.records import CHECKPOINT_TOPIC_SUFFIX, event_type
from exporters.verify import DayFiles
from ledger.domain.terms import DEFAULT_TOLERATED_DAYS, LicenceFileError, parse_terms
from ledger.persistence.codec import CompactTranscoder, unpack_payload
from ledger.seal.merkle import leaf_hash
from ledger.seal.seal import leaf_bytes
from seatledger.config.licence_file import LicenceSignatureError, key_fingerprint, split_licence
from seatledger.vendor.findings import (
    DaySignals,
    Finding,
    Findings,
    Kind,
    NewFinding,
    iso,
    worth_decoding,
)
from seatledger.vendor.home import VendorConfig
from seatledger.vendor.records import RecordSealer, VendorRecords
from seatledger.vendor.registry import (
    RegistryError,
    VendorStore,
    licences,
    metadata,
)

__all__ = ["LATE_AFTER", "UNKNOWN_CUSTOMER", "DayReport", "DayStatus", "ImportSummary",
           "VendorImport", "VendorImportError", "customer_days", "days"]

#: Below this many records to read, worker processes cost more than they save.
PARALLEL_FROM = 50_000
#: A day is overdue this long after it ended (its next midnight, UTC).
LATE_AFTER = timedelta(hours=36)
UNKNOWN_CUSTOMER = "?"


class VendorImportError(RegistryError):
    """The import cannot run: no identity, an inbox that is not a folder, a store conflict."""


class DayStatus(enum.StrEnum):
    IMPORTED = "imported"  # on the billed chain
    WAITING = "waiting"  # follows a day not imported yet
    QUARANTINED = "quarantined"  # a fork: kept aside, not billed
    DUPLICATE = "duplicate"  # the billed day's history again (re-built: other ciphertext)


# Days a run never looks at again.
_SETTLED = frozenset({DayStatus.IMPORTED, DayStatus.QUARANTINED, DayStatus.DUPLICATE})

days = sa.Table(
    "vendor_days", metadata,
    sa.Column("customer", sa.String(200), primary_key=True),
    sa.Column("manifest_sha256", sa.String(64), primary_key=True),
    sa.Column("day", sa.String(10), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("origin", sa.String(200), nullable=False),
    sa.Column("manifest_file", sa.Text, nullable=False),  # where it was found (absolute)
    sa.Column("previous_sha256", sa.String(64)),
    sa.Column("start_size", sa.BigInteger, nullable=False),
    sa.Column("start_root", sa.String(64), nullable=False),  # hex
    sa.Column("end_size", sa.BigInteger, nullable=False),
    sa.Column("end_root", sa.String(64), nullable=False),  # hex
    sa.Column("records", sa.BigInteger, nullable=False),
    sa.Column("export_key", sa.Text, nullable=False),  # the minisign key line that signed it
    sa.Column("checkpoint_key", sa.Text, nullable=False),
    sa.Column("received_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)
# One billed manifest per customer and day.
sa.Index("vendor_days_billed", days.c.customer, days.c.day, unique=True,
         sqlite_where=days.c.status == DayStatus.IMPORTED.value,
         postgresql_where=days.c.status == DayStatus.IMPORTED.value)


def customer_days(engine: Engine) -> dict[str, list[str]]:
    """The days imported (billed chain only) per customer, oldest first."""
    query = (sa.select(days.c.customer, days.c.day)
             .where(days.c.status == DayStatus.IMPORTED.value)
             .order_by(days.c.customer, days.c.day))
    result: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for customer, day in conn.execute(query):
            result.setdefault(customer, []).append(day)
    return result


@attrs.frozen
class DayReport:
    """What the run did with one manifest. ``status`` is a :class:`DayStatus` value,
    ``refused`` or ``already``."""

    customer: str
    day: str
    status: str
    records: int
    file: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class ImportSummary:
    days: tuple[DayReport, ...]
    findings: tuple[Finding, ...]
    records: int
    seconds: float
    incomplete: tuple[str, ...] = ()

    def of(self, status: str) -> list[DayReport]:
        return [d for d in self.days if d.status == status]

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for d in self.days:
            counts[d.status] += 1
        return {"records": self.records, "seconds": round(self.seconds, 3),
                "counts": dict(sorted(counts.items())),
                "days": [d.as_dict() for d in self.days if d.status != "already"],
                "refused": [d.as_dict() for d in self.days if d.status == "refused"],
                "incomplete": list(self.incomplete),
                "findings": [f.as_dict() for f in self.findings]}


# ------------------------------------------------------------------ what arrived
@attrs.frozen
class _Arrival:
    files: DayFiles
    data: bytes  # the manifest file's bytes
    sha256: str
    received_at: datetime
    key_id: bytes | None

    @property
    def name(self) -> str:
        return self.files.manifest.name


def _key_id_of_signature(signature: bytes) -> bytes | None:
    """The 8-byte key id a minisign signature names (its second line: algorithm, key id,
    signature)."""
    lines = signature.splitlines()
    if len(lines) < 2:
        return None
    try:
        raw = base64.b64decode(lines[1], validate=True)
    except ValueError:
        return None
    return raw[2:10] if len(raw) == 74 else None


def _key_id_of_public_key(line: str) -> bytes | None:
    try:
        raw = base64.b64decode(line, validate=True)
    except ValueError:
        return None
    return raw[2:10] if len(raw) == 42 else None


def _scan(folders: Iterable[Path], now: datetime) -> tuple[list[_Arrival], list[str]]:
    """The manifests in ``folders``; a file's time is when it arrived (never later than
    ``now``: a file time ahead of the run is a clock's error, not a late delivery)."""
    arrivals: dict[Path, _Arrival] = {}
    incomplete: list[str] = []
    for folder in folders:
        for path in sorted(folder.iterdir()):
            parsed = parse_name(path.name)
            if parsed is None or parsed[2] != MANIFEST_SUFFIX or path in arrivals:
                continue
            files = DayFiles(folder, path.name[: -len(MANIFEST_SUFFIX)], parsed[1])
            try:
                signature = files.manifest_signature.read_bytes()
                data = path.read_bytes()
                received = min(datetime.fromtimestamp(path.stat().st_mtime, UTC), now)
            except FileNotFoundError:
                incomplete.append(str(path))  # still being uploaded: the next run takes it
                continue
            arrivals[path] = _Arrival(files, data, hashlib.sha256(data).hexdigest(), received,
                                      _key_id_of_signature(signature))
    return list(arrivals.values()), incomplete


# ------------------------------------------------------------------ a customer's chain
@attrs.frozen
class _Tip:
    day: date
    sha256: str
    size: int
    root: bytes
    export_key: str
    checkpoint_key: str


@attrs.define
class _Chain:
    """One customer's days as the store holds them."""

    customer: str
    status: dict[str, DayStatus]  # manifest sha256 -> status
    billed: dict[str, tuple[str, str, int]]  # day -> (manifest sha256, end root hex, size)
    tip: _Tip | None

    @classmethod
    def load(cls, conn: Connection, customer: str) -> _Chain:
        status: dict[str, DayStatus] = {}
        billed: dict[str, tuple[str, str, int]] = {}
        last: Any = None
        for row in conn.execute(sa.select(days).where(days.c.customer == customer)
                                .order_by(days.c.day)):
            status[row.manifest_sha256] = DayStatus(row.status)
            if row.status == DayStatus.IMPORTED:
                billed[row.day] = (row.manifest_sha256, row.end_root, int(row.end_size))
                last = row
        tip = None if last is None else _Tip(
            date.fromisoformat(last.day), last.manifest_sha256, int(last.end_size),
            bytes.fromhex(last.end_root), last.export_key, last.checkpoint_key)
        return cls(customer, status, billed, tip)


class _Place(enum.Enum):
    IMPORT = "import"
    DUPLICATE = "duplicate"
    WAIT = "wait"
    FORK = "fork"
    BRANCH = "branch"  # follows a quarantined day


def _b64(root: bytes) -> str:
    return base64.b64encode(root).decode("ascii")


def _place(chain: _Chain, manifest: Manifest) -> tuple[_Place, str]:
    """Where a verified day goes on ``chain`` (see the module's table), and why."""
    day = manifest.day.isoformat()
    previous = manifest.previous
    cp = manifest.checkpoint
    theirs = f"root {_b64(cp.root)} at {cp.size} records"
    if previous.manifest_sha256 is not None and (
            chain.status.get(previous.manifest_sha256) == DayStatus.QUARANTINED):
        return _Place.BRANCH, f"follows the quarantined export of {previous.day}"
    if day in chain.billed:
        sha, root, size = chain.billed[day]
        if (size, root) == (cp.size, cp.root.hex()):
            return _Place.DUPLICATE, (f"the history of the imported export of {day} again "
                                      "(built anew)")
        return _Place.FORK, (f"a second history of {day}: the billed export has root "
                             f"{_b64(bytes.fromhex(root))} at {size} records, this one {theirs}")
    tip = chain.tip
    if previous.day is None:
        if tip is None:
            return _Place.IMPORT, ""
        return _Place.FORK, (f"a history started again from the empty tree ({theirs}); the "
                             f"billed chain ends on {tip.day} with root {_b64(tip.root)} at "
                             f"{tip.size} records")
    if tip is None or previous.day > tip.day:
        return _Place.WAIT, f"follows {previous.day}, which has not been imported"
    if previous.day == tip.day and (previous.size, previous.root) == (tip.size, tip.root):
        return _Place.IMPORT, ""
    return _Place.FORK, (f"does not continue the billed chain: it follows {previous.day} at root "
                         f"{_b64(previous.root)} ({previous.size} records), the billed chain "
                         f"has root {_b64(tip.root)} at {tip.size} records on {tip.day}; this "
                         f"day's {theirs}")


# ------------------------------------------------------------------ reading a day's records
class _Line(msgspec.Struct):
    """The parts of a JSON line the import trusts (the rest is derived from the payload)."""

    id: int
    originator_id: str
    version: int
    topic: str
    payload: bytes


_LINES = msgspec.json.Decoder(_Line)
_TRANSCODER = CompactTranscoder()


class _DayFault(Exception):
    """A day signed by a customer's key whose records do not hold what it says."""


def _decoded(line: _Line) -> dict[str, Any]:
    try:
        state: dict[str, Any] = _TRANSCODER.decode(unpack_payload(line.payload))
    except (ValueError, TypeError, msgspec.DecodeError, zlib.error) as err:
        raise _DayFault(f"record {line.id}: the payload does not decode ({err})") from None
    return state


def _read_records(files: DayFiles, manifest: Manifest, identity_text: str,
                  signals: DaySignals) -> list[tuple[int, UUID, int, str, bytes]]:
    """The day's records as ``(id, originator, version, topic, payload)``, checked against
    the signed root, with their findings fed to ``signals``.

    Raises:
        _DayFault: the records file is not what the manifest says.
    """
    try:
        ciphertext = files.data.read_bytes()
    except OSError as err:
        raise _DayFault(f"cannot read {files.data.name}: {err.strerror}") from None
    if hashlib.sha256(ciphertext).hexdigest() != manifest.data.sha256:
        raise _DayFault(f"{files.data.name} changed after it was verified")
    try:
        jsonl = gzip.decompress(decrypt_export(ciphertext, identity_text))
    except EnvelopeError as err:
        raise _DayFault(f"{files.data.name}: {err}") from None
    except (OSError, EOFError, zlib.error) as err:
        raise _DayFault(f"{files.data.name}: not gzip, or damaged ({err})") from None
    if (len(jsonl) != manifest.data.jsonl_size
            or hashlib.sha256(jsonl).hexdigest() != manifest.data.jsonl_sha256):
        raise _DayFault("the decrypted records differ from the manifest's hash")
    try:
        lines = _LINES.decode_lines(jsonl)
    except msgspec.DecodeError as err:
        raise _DayFault(f"the records file is malformed ({err})") from None
    if len(lines) != manifest.records.count:
        raise _DayFault(f"the file holds {len(lines)} records, the manifest says "
                        f"{manifest.records.count}")
    _, log_key = parse_verifier_key(manifest.checkpoint.key)  # verified already
    frontier = frontier_from_hashes(manifest.previous.size, manifest.start_frontier)
    append = frontier.append
    types: dict[str, str] = {}
    originators: dict[str, UUID] = {}  # a master has one licence aggregate: parse it once
    expected = manifest.records.first_id
    rows: list[tuple[int, UUID, int, str, bytes]] = []
    for line in lines:
        if line.id != expected:
            raise _DayFault(f"record {expected}: missing or out of order (found {line.id})")
        oid = originators.get(line.originator_id)
        if oid is None:
            try:
                oid = originators[line.originator_id] = UUID(line.originator_id)
            except ValueError:
                raise _DayFault(f"record {line.id}: originator_id is not a UUID") from None
        topic = line.topic
        type_ = types.get(topic)
        if type_ is None:
            type_ = types[topic] = event_type(topic)
        if topic.endswith(CHECKPOINT_TOPIC_SUFFIX):
            _check_checkpoint(line, frontier, manifest.origin, log_key)
        elif worth_decoding(type_, line.payload):
            signals.observe(line.id, type_, _decoded(line))
        append(leaf_hash(leaf_bytes(line.id, oid, line.version, topic, line.payload)))
        rows.append((line.id, oid, line.version, topic, line.payload))
        expected += 1
    if frontier.root() != manifest.checkpoint.root:
        raise _DayFault("the records do not give the signed root: altered, removed, added "
                        "or reordered")
    return rows


def _check_checkpoint(line: _Line, frontier: Any, origin: str, key: Ed25519PublicKey) -> None:
    try:
        check_recorded_checkpoint(line.id, _decoded(line).get("note"), frontier, origin, key)
    except RecordFault as err:
        raise _DayFault(str(err)) from None


@attrs.frozen
class _ReadJob:
    customer: str
    files: DayFiles
    manifest: Manifest


@attrs.frozen
class _DayRead:
    """One day read: its records as store rows (sealed) and the findings they give; or
    ``fault``, why the day is refused."""

    rows: list[tuple[Any, ...]]
    findings: list[NewFinding]
    fault: str | None = None


class _DayReader:
    """Reads days (decrypt, check against the signed root, look for findings, seal): the
    part of an import that needs no store, so that worker processes can share it."""

    def __init__(self, identity_text: str, store_key: bytes, issued: dict[str, str]) -> None:
        self._identity = identity_text
        self._sealer = RecordSealer(store_key)
        self._issued = issued

    def read(self, job: _ReadJob) -> _DayRead:
        day = job.manifest.day.isoformat()
        signals = DaySignals(job.customer, day, self._issued.get)
        try:
            rows = _read_records(job.files, job.manifest, self._identity, signals)
        except _DayFault as err:
            return _DayRead([], [], f"{day}: {err}")
        return _DayRead(self._sealer.seal_rows(job.customer, day, rows), signals.findings())


_WORKER_READER: _DayReader | None = None


def _start_worker(identity_text: str, store_key: bytes, issued: dict[str, str]) -> None:
    global _WORKER_READER
    _WORKER_READER = _DayReader(identity_text, store_key, issued)


def _read_in_worker(job: _ReadJob) -> _DayRead:
    assert _WORKER_READER is not None, "worker started without _start_worker"
    return _WORKER_READER.read(job)


@attrs.define
class _Item:
    """One new manifest of a customer, verified (``manifest``) or refused (``refusal``)."""

    arrival: _Arrival
    owner: _Master
    manifest: Manifest | None
    refusal: str = ""
    speculative: bool = False  # read ahead, on the guess that every day before it imports


# ------------------------------------------------------------------ the run
@attrs.frozen
class _Master:
    """An export key a licence names, and whose it is."""

    customer: str
    key_line: str


class VendorImport:
    """One import run over the vendor's store (see the module docstring).

    ``now`` is when the run happens (it decides what is late or missing); ``progress(done,
    total)`` is called with records imported so far. Days are read (decrypted, checked,
    sealed) by ``workers`` processes while this one writes; by default two when there is
    enough to read, none otherwise.
    """

    def __init__(self, config: VendorConfig, store: VendorStore, *,
                 now: datetime | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 workers: int | None = None) -> None:
        self.config = config
        self.store = store
        self.engine = store.engine
        self.now = (now or datetime.now(UTC)).astimezone(UTC)
        self.progress = progress
        self.findings = Findings(self.engine)
        self.records = VendorRecords(config, self.engine)
        self._identity = config.identity_text()
        self._reports: list[DayReport] = []
        self._opened: list[Finding] = []
        self._done = 0
        self._total = 0
        self.workers = workers
        self._conn: Connection | None = None
        self._pending = 0  # records written in the open transaction

    # -------------------------------------------------------------- registry
    def _registry(self) -> tuple[dict[bytes, list[_Master]], dict[str, str], dict[str, int],
                                 dict[str, set[str]]]:
        """Export keys by key id; licence file sha256 -> customer; tolerated days and
        master key fingerprints per customer (from its licences)."""
        by_key: dict[bytes, list[_Master]] = defaultdict(list)
        issued: dict[str, str] = {}
        tolerated: dict[str, int] = {}
        masters: dict[str, set[str]] = defaultdict(set)
        query = sa.select(licences.c.customer, licences.c.export_key, licences.c.sha256,
                          licences.c.master_key, licences.c.file).order_by(
            licences.c.customer, licences.c.serial)
        with self.engine.connect() as conn:
            for customer, key, sha, master_key, text in conn.execute(query):
                line = public_key_line(key)
                key_id = _key_id_of_public_key(line)
                if key_id is not None and _Master(customer, line) not in by_key[key_id]:
                    by_key[key_id].append(_Master(customer, line))
                issued[sha] = customer
                masters[customer].add(master_key)
                tolerated[customer] = _tolerated_days(text)
        return by_key, issued, tolerated, masters

    # -------------------------------------------------------------- run
    def run(self, folders: Sequence[Path]) -> ImportSummary:
        """Import every new export in ``folders`` (and days waiting from earlier runs).

        Raises:
            VendorImportError: a folder is missing, or another run imported the same day at
                the same time (run again).
        """
        started = time.perf_counter()
        for folder in folders:
            if not folder.is_dir():
                raise VendorImportError(f"the inbox {folder} is not a folder")
        by_key, issued, tolerated, masters = self._registry()
        arrivals, incomplete = _scan(self._folders(folders), self.now)
        per_customer: dict[str, list[tuple[_Arrival, _Master]]] = defaultdict(list)
        known = self._known_manifests()
        for arrival in arrivals:
            owners = by_key.get(arrival.key_id or b"", [])
            if len(owners) != 1:
                self._unknown(arrival, owners)
                continue
            owner = owners[0]
            if known.get((owner.customer, arrival.sha256)) in _SETTLED:
                self._report(owner.customer, arrival, "already", 0)
                continue
            per_customer[owner.customer].append((arrival, owner))
        self._total = sum(_count_hint(a.data) for group in per_customer.values()
                          for a, _ in group)
        plans = [self._verify_customer(customer, per_customer[customer])
                 for customer in sorted(per_customer)]
        jobs = _speculate(plans)
        reader = _DayReader(self._identity, self.records.key, issued)
        workers = self._workers(sum(job.manifest.records.count for job in jobs))
        with contextlib.ExitStack() as stack:
            results: Iterator[_DayRead]
            if workers:
                pool = stack.enter_context(ProcessPoolExecutor(
                    workers, initializer=_start_worker,
                    initargs=(self._identity, self.records.key, issued)))
                results = _in_order(pool, jobs, window=2 * workers + 2)
            else:
                results = (reader.read(job) for job in jobs)
            try:
                for chain, items in plans:
                    self._import_customer(chain, items, results, reader,
                                          masters[chain.customer])
                    self._commit()
                self._overdue(tolerated)
                self._commit()
            except sa.exc.IntegrityError:
                raise VendorImportError("another import run imported the same days at the "
                                        "same time; nothing of this batch was kept: run the "
                                        "import again") from None
            finally:
                self._rollback()
        if self.progress is not None:
            self.progress(self._done, self._total)
        return ImportSummary(tuple(self._reports), tuple(self._opened), self._done,
                             time.perf_counter() - started, tuple(incomplete))

    def _folders(self, folders: Sequence[Path]) -> list[Path]:
        """The inbox folders and those of days waiting since an earlier run."""
        result = [f.absolute() for f in folders]
        with self.engine.connect() as conn:
            for (path,) in conn.execute(sa.select(days.c.manifest_file).distinct()
                                        .where(days.c.status == DayStatus.WAITING.value)):
                folder = Path(path).parent
                if folder.is_dir() and folder not in result:
                    result.append(folder)
        return result

    def _known_manifests(self) -> dict[tuple[str, str], DayStatus]:
        with self.engine.connect() as conn:
            return {(c, s): DayStatus(st) for c, s, st in conn.execute(
                sa.select(days.c.customer, days.c.manifest_sha256, days.c.status))}

    def _report(self, customer: str, arrival: _Arrival, status: str, records: int,
                detail: str = "") -> None:
        self._reports.append(DayReport(customer, arrival.files.day.isoformat(), status,
                                       records, str(arrival.files.manifest), detail))

    # -------------------------------------------------------------- the one writer
    # Every write of a run goes through one transaction, committed after each customer (and
    # every COMMIT_EVERY records): a commit per day would cost more than the day's inserts,
    # and on SQLite a second writing connection would wait for the first.
    COMMIT_EVERY = 200_000

    def _writer(self) -> Connection:
        if self._conn is None:
            self._conn = self.engine.connect()
            self._conn.begin()
        return self._conn

    def _commit(self) -> None:
        if self._conn is not None:
            self._conn.commit()
            self._conn.close()
            self._conn, self._pending = None, 0

    def _rollback(self) -> None:
        if self._conn is not None:
            self._conn.rollback()
            self._conn.close()
            self._conn, self._pending = None, 0

    def _open(self, new: Sequence[NewFinding]) -> None:
        if new:
            self._opened += self.findings.open(self._writer(), new, self.now)

    def _unknown(self, arrival: _Arrival, owners: list[_Master]) -> None:
        key = arrival.key_id.hex().upper() if arrival.key_id else "(unreadable signature)"
        if owners:
            why = (f"signed by key {key}, which licences of several customers name "
                   f"({', '.join(sorted(o.customer for o in owners))})")
        else:
            why = f"signed by key {key}, which no licence the vendor issued names"
        self._report(UNKNOWN_CUSTOMER, arrival, "refused", 0, why)
        self._open([NewFinding.of(UNKNOWN_CUSTOMER, Kind.UNKNOWN_KEY,
                                  arrival.files.day.isoformat(), f"{arrival.name}: {why}",
                                  arrival.sha256)])

    def _refuse(self, customer: str, arrival: _Arrival, why: str) -> None:
        self._report(customer, arrival, "refused", 0, why)
        self._open([NewFinding.of(customer, Kind.INVALID_EXPORT, arrival.files.day.isoformat(),
                                  f"{arrival.name}: {why}", arrival.sha256)])

    # -------------------------------------------------------------- one customer
    def _workers(self, records: int) -> int:
        if self.workers is not None:
            return self.workers
        return min(2, os.cpu_count() or 1) if records >= PARALLEL_FROM else 0

    def _verify_customer(self, customer: str,
                         group: list[tuple[_Arrival, _Master]]) -> tuple[_Chain, list[_Item]]:
        """Check every new manifest of ``customer`` (steps 1-4 of the verification)."""
        chain = _Chain.load(self._writer(), customer)
        group = sorted(group, key=lambda x: (x[0].files.day, x[0].received_at, x[0].sha256))
        verifiers: dict[str, Verifier] = {}
        items: list[_Item] = []
        for arrival, owner in group:
            if chain.status.get(arrival.sha256) in _SETTLED:
                self._report(customer, arrival, "already", 0)
                continue
            verifier = verifiers.setdefault(owner.key_line, Verifier(owner.key_line))
            try:
                verified = verifier.verify([arrival.files.manifest]).days[0]
            except VerifyError as err:
                items.append(_Item(arrival, owner, None, str(err)))
                continue
            if verified.manifest_sha256 != arrival.sha256:
                items.append(_Item(arrival, owner, None, "the manifest changed while it was "
                                                         "read"))
                continue
            items.append(_Item(arrival, owner, verified.manifest))
        return chain, items

    def _import_customer(self, chain: _Chain, items: list[_Item], results: Iterator[_DayRead],
                         reader: _DayReader, master_keys: set[str]) -> None:
        customer = chain.customer
        for item in items:
            read = next(results) if item.speculative else None
            arrival, owner, manifest = item.arrival, item.owner, item.manifest
            if manifest is None:
                self._refuse(customer, arrival, item.refusal)
                continue
            place, why = _place(chain, manifest)
            if place is _Place.IMPORT:
                if read is None:  # an earlier day failed after all: read it now
                    read = reader.read(_ReadJob(customer, arrival.files, manifest))
                self._import_day(chain, item, manifest, read, master_keys)
            elif place is _Place.WAIT:
                self._set_aside(chain, arrival, owner, manifest, DayStatus.WAITING, why, [])
            elif place is _Place.DUPLICATE:
                self._set_aside(chain, arrival, owner, manifest, DayStatus.DUPLICATE, why, [])
            else:
                fork = [] if place is _Place.BRANCH else [NewFinding.of(
                    customer, Kind.FORK, manifest.day.isoformat(),
                    f"{arrival.name}: {why}; quarantined, the billed chain stays",
                    arrival.sha256)]
                self._set_aside(chain, arrival, owner, manifest, DayStatus.QUARANTINED, why,
                                fork)

    def _row(self, arrival: _Arrival, owner: _Master, manifest: Manifest, status: DayStatus,
             detail: str) -> dict[str, Any]:
        return {
            "customer": owner.customer, "manifest_sha256": arrival.sha256,
            "day": manifest.day.isoformat(), "status": status.value,
            "origin": manifest.origin, "manifest_file": str(arrival.files.manifest.absolute()),
            "previous_sha256": manifest.previous.manifest_sha256,
            "start_size": manifest.previous.size, "start_root": manifest.previous.root.hex(),
            "end_size": manifest.checkpoint.size, "end_root": manifest.checkpoint.root.hex(),
            "records": manifest.records.count, "export_key": owner.key_line,
            "checkpoint_key": manifest.checkpoint.key, "received_at": iso(arrival.received_at),
            "updated_at": iso(self.now), "detail": detail,
        }

    def _write_day(self, conn: Connection, row: dict[str, Any]) -> None:
        where = sa.and_(days.c.customer == row["customer"],
                        days.c.manifest_sha256 == row["manifest_sha256"])
        if conn.execute(sa.select(days.c.status).where(where)).first() is None:
            conn.execute(days.insert().values(**row))
        else:
            conn.execute(days.update().where(where).values(**row))

    def _set_aside(self, chain: _Chain, arrival: _Arrival, owner: _Master, manifest: Manifest,
                   status: DayStatus, why: str, new: list[NewFinding]) -> None:
        if status is DayStatus.WAITING and chain.status.get(arrival.sha256) is status:
            self._report(chain.customer, arrival, status.value, 0, why)
            return
        self._write_day(self._writer(), self._row(arrival, owner, manifest, status, why))
        self._open(new)
        _advance(chain, arrival.sha256, manifest, status, owner.key_line)
        self._report(chain.customer, arrival, status.value, 0, why)

    def _import_day(self, chain: _Chain, item: _Item, manifest: Manifest, read: _DayRead,
                    master_keys: set[str]) -> None:
        customer, arrival = chain.customer, item.arrival
        if read.fault is not None:
            self._refuse(customer, arrival, read.fault)
            return
        new = read.findings + self._arrival_findings(chain, arrival, item.owner, manifest,
                                                     master_keys)
        conn = self._writer()
        self._write_day(conn, self._row(arrival, item.owner, manifest, DayStatus.IMPORTED, ""))
        count = self.records.insert_sealed(conn, read.rows)
        self._open(new)
        self._pending += count
        if self._pending >= self.COMMIT_EVERY:
            self._commit()
        _advance(chain, arrival.sha256, manifest, DayStatus.IMPORTED, item.owner.key_line)
        self._done += count
        self._report(customer, arrival, DayStatus.IMPORTED.value, count)
        if self.progress is not None:
            self.progress(self._done, self._total)

    def _arrival_findings(self, chain: _Chain, arrival: _Arrival, owner: _Master,
                          manifest: Manifest, master_keys: set[str]) -> list[NewFinding]:
        customer, day = chain.customer, manifest.day.isoformat()
        found: list[NewFinding] = []
        overdue = _day_end(manifest.day) + LATE_AFTER
        if arrival.received_at > overdue:
            found.append(NewFinding.of(customer, Kind.LATE_DAY, day,
                                       f"arrived {iso(arrival.received_at)}, "
                                       f"{_hours(arrival.received_at - _day_end(manifest.day))} "
                                       "hours after the day ended (36 tolerated)"))
        tip = chain.tip
        if tip is not None and tip.export_key != owner.key_line:
            found.append(NewFinding.of(customer, Kind.KEY_CHANGED, day,
                                       f"the master's export key changed: {tip.day} was signed "
                                       f"by {tip.export_key[:20]}..., {day} by "
                                       f"{owner.key_line[:20]}...", "export key"))
        if tip is not None and tip.checkpoint_key != manifest.checkpoint.key:
            found.append(NewFinding.of(customer, Kind.KEY_CHANGED, day,
                                       f"the master's checkpoint key changed: {tip.day} "
                                       f"{tip.checkpoint_key[:40]}..., {day} "
                                       f"{manifest.checkpoint.key[:40]}...", "checkpoint key"))
        _, log_key = parse_verifier_key(manifest.checkpoint.key)
        fingerprint = key_fingerprint(log_key)
        if fingerprint not in master_keys:
            found.append(NewFinding.of(customer, Kind.KEY_CHANGED, day,
                                       f"the checkpoints are signed by master key "
                                       f"{fingerprint[:23]}..., which no licence issued to "
                                       f"{customer!r} names", f"unlicensed {fingerprint}"))
        return found

    # -------------------------------------------------------------- overdue days
    def _overdue(self, tolerated: dict[str, int]) -> None:
        """Missing days and a breached export obligation, for every customer with a chain."""
        seen: dict[str, dict[str, DayStatus]] = defaultdict(dict)
        for customer, day, status in self._writer().execute(
                sa.select(days.c.customer, days.c.day, days.c.status)):
            if status in (DayStatus.WAITING.value, DayStatus.IMPORTED.value):
                seen[customer].setdefault(day, DayStatus(status))
            if status == DayStatus.IMPORTED.value:
                seen[customer][day] = DayStatus.IMPORTED
        new: list[NewFinding] = []
        for customer, known in sorted(seen.items()):
            billed = sorted(d for d, s in known.items() if s is DayStatus.IMPORTED)
            if not billed:
                continue
            latest = date.fromisoformat(max(known))
            day = date.fromisoformat(billed[0])
            tail = 0
            while day <= latest or _day_end(day) + LATE_AFTER < self.now:
                status = known.get(day.isoformat())
                if status is DayStatus.IMPORTED:
                    tail = 0
                else:
                    tail += 1
                    if status is None:
                        new.append(NewFinding.of(
                            customer, Kind.MISSING_DAY, day.isoformat(),
                            f"no export of {day} has arrived"
                            + (f" (the export of {latest} has)" if day < latest else
                               f" {_hours(self.now - _day_end(day))} hours after it ended")))
                day += timedelta(days=1)
            allowed = tolerated.get(customer, DEFAULT_TOLERATED_DAYS)
            if tail > allowed:
                last = date.fromisoformat(billed[-1])
                new.append(NewFinding.of(
                    customer, Kind.EXPORT_OBLIGATION, last.isoformat(),
                    f"{tail} days without an importable export after {last} "
                    f"({allowed} tolerated by the licence)", "silent after"))
        self._open(new)


_STATUS_OF = {_Place.IMPORT: DayStatus.IMPORTED, _Place.WAIT: DayStatus.WAITING,
              _Place.DUPLICATE: DayStatus.DUPLICATE, _Place.FORK: DayStatus.QUARANTINED,
              _Place.BRANCH: DayStatus.QUARANTINED}


def _advance(chain: _Chain, sha256: str, manifest: Manifest, status: DayStatus,
             export_key: str) -> None:
    """``chain`` after a manifest got ``status``."""
    chain.status[sha256] = status
    if status is DayStatus.IMPORTED:
        cp = manifest.checkpoint
        chain.billed[manifest.day.isoformat()] = (sha256, cp.root.hex(), cp.size)
        chain.tip = _Tip(manifest.day, sha256, cp.size, cp.root, export_key, cp.key)


def _speculate(plans: list[tuple[_Chain, list[_Item]]]) -> list[_ReadJob]:
    """The days to read ahead: those that import if every day before them does (marked
    ``speculative``), in the order the run takes them."""
    jobs: list[_ReadJob] = []
    for chain, items in plans:
        guess = _Chain(chain.customer, dict(chain.status), dict(chain.billed), chain.tip)
        for item in items:
            if item.manifest is None:
                continue
            place, _ = _place(guess, item.manifest)
            if place is _Place.IMPORT:
                item.speculative = True
                jobs.append(_ReadJob(chain.customer, item.arrival.files, item.manifest))
            _advance(guess, item.arrival.sha256, item.manifest, _STATUS_OF[place],
                     item.owner.key_line)
    return jobs


def _in_order(pool: ProcessPoolExecutor, jobs: list[_ReadJob], *,
              window: int) -> Iterator[_DayRead]:
    """The jobs' results in order, at most ``window`` in flight (days are large)."""
    pending: deque[Future[_DayRead]] = deque()
    queue = iter(jobs)
    for job in itertools.islice(queue, window):
        pending.append(pool.submit(_read_in_worker, job))
    while pending:
        done = pending.popleft()
        for job in itertools.islice(queue, 1):
            pending.append(pool.submit(_read_in_worker, job))
        yield done.result()


def _day_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), dtime(0), tzinfo=UTC)


def _hours(delta: timedelta) -> int:
    return int(delta.total_seconds() // 3600)


def _tolerated_days(licence_text: str) -> int:
    try:
        body, _ = split_licence(licence_text)
        return parse_terms(body).export.tolerated_days
    except (LicenceFileError, LicenceSignatureError):
        return DEFAULT_TOLERATED_DAYS


def _count_hint(manifest_bytes: bytes) -> int:
    """The record count a manifest claims (for the progress bar's total only)."""
    try:
        return decode_manifest(manifest_bytes).records.count
    except ValueError:
        return 0
