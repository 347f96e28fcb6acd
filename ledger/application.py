"""The ledger application: the licence aggregate on a sealed, encrypted event store."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

import attrs
import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import CanMutateAggregate, OriginatorVersionError
from eventsourcing.persistence import (
    MapperDeserialisationError,
    Notification,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.utils import TopicError

from ledger.clock import Clock, SystemClock, TimeKeeper
from ledger.domain.commands import Command, run_command
from ledger.domain.licence import LICENCE_ID, Licence
from ledger.domain.outcomes import Notice, Outcome, Release
from ledger.domain.terms import LicenceTerms
from ledger.domain.values import DEFAULT_CUTOFF_SECONDS, DEFAULT_POLICY, GracePolicy
from ledger.errors import KeyFileError, LedgerError, LicenceError, LicenceNotFoundError, StoreError
from ledger.persistence.codec import (
    CompactTranscoder,
    EventKind,
    RowCipher,
    SealedMapper,
    open_rows,
    originator_bytes,
)
from ledger.persistence.fencing import Fence, attach_fence, fenced_env
from ledger.persistence.forked import SPLIT_ABOVE, Child, can_fork, read_only
from ledger.persistence.schema_lock import holding_schema_lock
from ledger.persistence.store import (
    TOP_ID,
    CompactSQLiteRecorder,
    collector_paused,
    originator_page,
    persistence_env,
    read_lookups,
)
from ledger.seal.ahead import ForkedAhead
from ledger.seal.merkle import Frontier
from ledger.seal.seal import (
    DEFAULT_SIGN_EVERY_RECORDS,
    DEFAULT_SIGN_EVERY_SECONDS,
    PAGE,
    Problem,
    Sealer,
    VerifyReport,
    open_payload,
    verify_records,
)

_T = TypeVar("_T")
DECRYPTED_PAGE = 8192  # ids a replay's child decrypts at a time (the first wait is one's)

FedRow = tuple[int, Any, int, str, bytes]
"""A committed record as the seal hashed it: (record id, originator id, version, topic,
plaintext payload). See :meth:`LedgerApp.take_fed`."""
_LICENCE_BYTES = LICENCE_ID.bytes

DEFAULT_SNAPSHOT_EVERY = 20_000
DEFAULT_CHECKPOINT_EVERY = 10_000


@attrs.frozen
class Staged:
    """A batch decided and encoded, not yet written (:meth:`LedgerApp.stage`)."""

    licence: Licence
    outcomes: list[Outcome]
    events: list[Any]
    stored: list[StoredEvent]


@attrs.frozen
class ImportedRecord:
    """One record as another ledger exported it (see docs/export-format.md)."""

    id: int
    originator_id: UUID
    version: int
    topic: str
    payload: bytes


class _EventSourcedLedger(Application[UUID]):
    """eventsourcing's Application, with our mapper. Configured only by LedgerApp."""

    name = "seatledger"

    def __init__(self, env: Mapping[str, str], cipher: RowCipher | None, compress: bool):
        self._cipher = cipher
        self._compress = compress
        super().__init__(env=dict(env))

    def construct_mapper(self) -> SealedMapper:
        return SealedMapper(CompactTranscoder(), self._cipher, self._compress)


# Below this much free space an SQLite I/O failure is reported as a full disk.
DISK_FULL_BYTES = 1 << 20

class LedgerApp:
    """The ledger: commands in, events recorded, sealed; state and history out.

    Holds the licence aggregate in memory between commands (a master is the only writer),
    and commits each command or batch of commands in one transaction.
    """

    def __init__(
        self,
        url: str,
        *,
        key: bytes | None,
        signing_key: Ed25519PrivateKey,
        clock: Clock | None = None,
        origin: str = "seatledger",
        checkpoint_file: Path | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        sign_every_records: int = DEFAULT_SIGN_EVERY_RECORDS,
        sign_every_seconds: float = DEFAULT_SIGN_EVERY_SECONDS,
        compress: bool = True,
        read_only: bool = False,
        snapshot_when_idle: bool = False,
        note_key: Ed25519PublicKey | None = None,
        fence: Fence | None = None,
    ):
        """Open the store. ``read_only`` (for audits) skips loading the licence and the
        seal's consistency check, so that a damaged store can still be examined.

        The seal signs a checkpoint row in the store every ``sign_every_records`` records,
        and the file outside the store at most ``sign_every_seconds`` of ledger time after a
        commit (see ledger.seal.seal). Raises ValueError for a cadence below one record.

        ``snapshot_when_idle`` takes a due snapshot (every ``snapshot_every`` events) not
        right after the commit that made it due but when the ledger is next idle (a command
        that records nothing, such as a master's tick finding nothing due) or closes, so that
        no command waits for it; past twice ``snapshot_every`` it is taken after a commit
        anyway."""
        # ``fence`` (PostgreSQL only) runs inside every commit's transaction: see
        # ledger.persistence.fencing.
        env = persistence_env(url) if fence is None else fenced_env(url)
        env["IS_SNAPSHOTTING_ENABLED"] = "y"
        self.url = url
        self.origin = origin
        self.signing_key = signing_key
        self.public_key: Ed25519PublicKey = signing_key.public_key()
        # Recorded checkpoint notes are signed by whoever wrote the history: this ledger,
        # or, in a recipient's data directory, the master whose export was imported.
        self.note_key = note_key or self.public_key
        self.cipher = RowCipher(key) if key is not None else None
        self.checkpoint_file = checkpoint_file
        self.snapshot_every = snapshot_every
        self.checkpoint_every = checkpoint_every
        self.sign_every_records = sign_every_records
        self.sign_every_seconds = sign_every_seconds
        self.snapshot_when_idle = snapshot_when_idle
        self.timekeeper = TimeKeeper(clock or SystemClock())
        self._needs_reload = False
        self._staged = 0  # batches staged and not settled (see ahead)
        self.writes_elsewhere = False
        """A master's copy of a ledger whose writer is another process: it never writes
        (its aggregate follows the writer's events, see :meth:`absorb`)."""
        self._keep_fed = False
        self._fed: list[FedRow] = []
        self.loads = 0
        """How many times the licence was loaded from the store (a reload changes it)."""
        # The commit connection's data version when the store's top last matched the seal
        # (SQLite): see _committed_elsewhere.
        self._data_version: int | None = None
        self._clock_steps: list[tuple[datetime, datetime]] = []
        try:
            with holding_schema_lock(env):  # another process may be creating it too
                self._app = _EventSourcedLedger(env, self.cipher, compress)
        except sqlite3.OperationalError as e:
            raise StoreError(f"cannot open store {_redact(url)}: {e}{_disk_full_hint(env)}") from e
        except sqlite3.DatabaseError as e:
            raise StoreError(f"the store {_redact(url)} is damaged ({e}): nothing was changed; "
                             "restore it from a backup") from e
        except (PersistenceError, OSError, psycopg.Error) as e:
            raise StoreError(f"cannot open store {_redact(url)}: {_first_line(e)}") from e
        self.recorder: Any = self._app.recorder
        if fence is not None:
            attach_fence(self.recorder, fence)
        self.mapper: SealedMapper = self._app.mapper  # type: ignore[assignment]
        # Decodes plaintext payloads (the writer process's records, the read models' feed).
        self._plain = SealedMapper(self.mapper.transcoder, None, True)  # type: ignore[arg-type]
        self.contiguous_ids = isinstance(self.recorder, CompactSQLiteRecorder)
        self._licence: Licence | None = None
        self._events_since_snapshot = 0
        self._wrote = False
        self.read_only = read_only
        self._open_seal()
        if not read_only:
            self._load()

    # ---------------------------------------------------------------- opening
    def _open_seal(self) -> None:
        try:
            frontier_bytes = self.recorder.read_frontier()
            top = self.recorder.max_notification_id() or 0
        except PersistenceError as e:
            raise StoreError(f"cannot read store: {_first_line(e)}") from e
        try:
            frontier = Frontier.from_bytes(frontier_bytes) if frontier_bytes else Frontier()
        except ValueError as e:
            raise StoreError(f"the seal state is damaged ({e}): run 'seatledger audit verify'") from None
        if self.contiguous_ids and frontier.size != top and not self.read_only:
            raise StoreError(
                f"the store holds {top} records but its seal covers {frontier.size}: "
                "it was altered outside the ledger (run 'seatledger audit verify')"
            )
        if (self.checkpoint_file is not None and not self.read_only and frontier.size
                and not self.checkpoint_file.exists()):
            # The checkpoint kept outside the store is gone. Writing a fresh one would hide
            # that (a truncated tail could no longer be told): note where it was lost first,
            # so that 'audit verify' keeps reporting it until an operator accepts it.
            lost = _lost_marker(self.checkpoint_file)
            if not lost.exists():
                lost.write_text(f"{frontier.size}\n")
        self.sealer = Sealer(frontier, self.signing_key, self.origin, self.checkpoint_file,
                             cipher=self.cipher, contiguous_ids=self.contiguous_ids,
                             sign_every_records=self.sign_every_records,
                             sign_every_seconds=self.sign_every_seconds,
                             clock=self._ledger_seconds)
        self.recorder.seal_hook = self.sealer
        self.mapper.recent_payloads = self.sealer.recent_payloads
        self.sealer.keep_rows = self._keep_fed

    def _ledger_seconds(self) -> float:
        return self.now().timestamp()

    def _load(self) -> None:
        self.loads += 1
        try:
            self._licence = self._app.repository.get(LICENCE_ID)
            # Count from the latest snapshot, not from zero, so that many short sessions
            # still take snapshots and opening stays fast however long the history grows.
            latest = 0
            if self._app.snapshots is not None:
                for snapshot in self._app.snapshots.get(LICENCE_ID, desc=True, limit=1):
                    latest = snapshot.originator_version
            self._events_since_snapshot = self._licence.version - latest
        except AggregateNotFoundError:
            self._licence = None
        except MapperDeserialisationError as e:
            raise KeyFileError(
                "the at-rest key does not open this store (wrong key, or the store is damaged: "
                "run 'seatledger audit verify')"
            ) from e
        except PersistenceError as e:
            raise StoreError(f"cannot read store: {_first_line(e)}") from e

    def close(self) -> None:
        """Seal the tail with a recorded checkpoint (its row signed), then close the store."""
        try:
            if not self.writes_elsewhere:  # (a writer process seals its own tail)
                if (self._wrote and self._licence is not None
                        and self.sealer.frontier.size > self._licence.last_checkpoint_size):
                    self._record_checkpoint()
                if self._wrote and self._events_since_snapshot >= self.snapshot_every:
                    self.take_snapshot()
                self.sealer.flush()
        finally:
            self._app.close()
            if isinstance(self.recorder, CompactSQLiteRecorder):
                self.recorder.close()

    def __enter__(self) -> LedgerApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- state
    @property
    def licence(self) -> Licence:
        if self._licence is None:
            raise LicenceNotFoundError("this ledger holds no licence history yet")
        return self._licence

    @property
    def has_licence(self) -> bool:
        return self._licence is not None

    def now(self) -> datetime:
        """The recorded time a command arriving now would get."""
        last = self._licence.modified_on if self._licence is not None else None
        return self.timekeeper.read(last, peek=True)[0]

    def _time(self, licence: Licence | None) -> datetime:
        last = licence.modified_on if licence is not None else None
        now, step = self.timekeeper.read(last)
        if step is not None and licence is not None:
            licence.record_clock_step(now, *step)
            self._clock_steps.append(step)
        return now

    def note_clock_step(self, step: tuple[datetime, datetime]) -> None:
        """A step the writer process records for this copy's master (for take_clock_steps)."""
        self._clock_steps.append(step)

    def take_clock_steps(self) -> list[tuple[datetime, datetime]]:
        """The wall-clock steps recorded since the last call, as (wall, expected): a running
        master tells its sites (a critical notice)."""
        steps, self._clock_steps = self._clock_steps, []
        return steps

    # ---------------------------------------------------------------- saving
    def _check_writable(self) -> None:
        if self.writes_elsewhere:
            raise StoreError("this ledger's writer is another process: send it the command")
        if self.read_only:
            raise StoreError("this ledger was opened read-only (for an audit)")

    def _save(self, licence: Licence) -> None:
        self._check_writable()
        try:
            staged = self._encode(licence, [])
            self.write_staged(staged)
        except StoreError:
            self.recover()
            raise
        self._settle(staged)

    def _encode(self, licence: Licence, outcomes: list[Outcome]) -> Staged:
        # What Application.save does, minus the recordings and notifications we do not
        # use: map the pending events (and insert them in one transaction: write_staged).
        events = licence.collect_events()
        self._staged += 1
        to_stored = self.mapper.to_stored_event
        try:
            stored = [to_stored(e) for e in events]
        except (PersistenceError, OSError) as e:
            raise StoreError(f"commit failed: {_first_line(e)}") from e
        return Staged(licence, outcomes, events, stored)

    def stage(self, commands: Sequence[Command]) -> Staged:
        """Decide a batch and encode its records, without writing them: :meth:`execute`
        in three steps, for a writer that overlaps commits (decides the next batch while
        this one's transaction is made durable). Then :meth:`write_staged` it and
        :meth:`settle_staged` it; if the write fails, :meth:`recover` and decide again
        (this batch and any staged after it: the licence in memory was ahead of the
        store). Raises StoreError (nothing recorded) if the records cannot be encoded:
        then :meth:`recover` too, once no write is in flight."""
        self._check_writable()
        licence = self.licence
        now = self._time(licence)
        return self._encode(licence, [run_command(licence, now, c) for c in commands])

    def write_staged(self, staged: Staged) -> None:
        """Commit a staged batch's records in one transaction. Touches only the store and
        the seal, so it may run in another thread while the next batch is staged. Raises
        StoreError (nothing of it recorded); then call :meth:`recover` once no batch is
        being staged."""
        if not staged.stored:
            return
        try:
            self.recorder.insert_events(staged.stored)
        except (PersistenceError, OSError) as e:
            raise StoreError(f"commit failed: {_first_line(e)}") from e
        if self._keep_fed:
            self._fed += self.sealer.sealed_rows
            self.sealer.sealed_rows = []

    def overlaps(self, staged: Staged) -> bool:
        """Whether the next batch may be staged while ``staged`` is written: settling it
        will record nothing more and take no snapshot (either must see the licence as the
        store has it, not a batch ahead)."""
        if not staged.events:
            return self._events_since_snapshot < self.snapshot_every
        size = self.sealer.frontier.size + len(staged.stored)
        return (size - staged.licence.last_checkpoint_size < self.checkpoint_every
                and self._events_since_snapshot + len(staged.events) < self._snapshot_after)

    def settle_staged(self, staged: Staged) -> list[Outcome]:
        """After a staged batch is written: the ledger's bookkeeping; its outcomes."""
        self._settle(staged)
        return staged.outcomes

    @property
    def ahead(self) -> bool:
        """Whether the licence in memory holds decisions the store does not (a batch
        staged and not settled, or one whose write failed): :meth:`recover` then."""
        return self._staged > 0

    def recover(self) -> None:
        """After a failed write: the licence in memory is ahead of the store; reload what
        was committed. If the reload fails too (the disk is still full), the next
        :meth:`refresh` retries."""
        self._staged = 0
        self._licence = None
        self._needs_reload = True
        self._open_seal()
        self._load()
        self._needs_reload = False

    @property
    def _snapshot_after(self) -> int:
        """Events after which a commit takes the snapshot itself (see snapshot_when_idle)."""
        return self.snapshot_every * (2 if self.snapshot_when_idle else 1)

    def _settle(self, staged: Staged) -> None:
        licence, events = staged.licence, staged.events
        self._staged -= 1
        if not events:
            # Nothing was committed (an idle master's tick): time may still have come to
            # sign the tail into the file outside the store.
            self.sealer.note_if_due()
            if self._events_since_snapshot >= self.snapshot_every:
                self.take_snapshot()
            self._checkpoint_wal()
            return
        self._licence = licence
        self._wrote = True
        self._events_since_snapshot += len(events)
        # A snapshot is taken after the events' transaction, never inside it.
        if self._events_since_snapshot >= self._snapshot_after:
            self.take_snapshot()
        if self.sealer.frontier.size - licence.last_checkpoint_size >= self.checkpoint_every:
            self._record_checkpoint()

    def _record_checkpoint(self) -> None:
        licence = self.licence
        frontier = self.sealer.frontier
        licence.record_checkpoint(self._time(licence), frontier.size, frontier.root(),
                                  self.sealer.signed_note())
        self.sealer.sign_next_commit()
        self._save(licence)

    def take_snapshot(self) -> None:
        if self._licence is None or self._app.snapshots is None:
            return
        try:
            # (Its encoding makes a row per seat held, freed as soon as it is written: the
            # collector would only rescan them, tens of times for 10,000 seats.)
            with collector_paused():
                snapshot = Licence.Snapshot.take(self._licence)
                self._app.snapshots.put([snapshot])
        except (PersistenceError, OSError):
            # The events are durable already and a snapshot is only a shortcut for opening:
            # failing the commit now would refuse what was recorded. Try again next time.
            return
        self._events_since_snapshot = 0

    def _checkpoint_wal(self) -> None:
        """While the ledger is idle (after the snapshot it may have taken), copy SQLite's
        write-ahead log into the database file once it has grown, so that no commit does:
        the commit that grows the log past SQLite's auto-checkpoint threshold pays for the
        copy and its fsyncs, the longest commit of all, whether or not a snapshot was
        written (see CompactSQLiteRecorder.checkpoint_if_grown). A ledger that is not idle
        often enough still checkpoints in that commit."""
        if not isinstance(self.recorder, CompactSQLiteRecorder):
            return  # (PostgreSQL checkpoints by itself)
        try:
            self.recorder.checkpoint_if_grown()
        except PersistenceError:
            pass  # only housekeeping: the auto-checkpoint copies the log instead

    def _command(self, fn: Callable[[Licence, datetime], _T]) -> _T:
        licence = self.licence
        result = fn(licence, self._time(licence))
        self._save(licence)
        return result

    # ---------------------------------------------------------------- commands
    def issue_licence(
        self,
        *,
        customer: str,
        limits: Mapping[str, int],
        total_pred_acd: int | None = None,
        expires_at: datetime | None = None,
        policy: GracePolicy = DEFAULT_POLICY,
        cutoff_seconds: int = DEFAULT_CUTOFF_SECONDS,
    ) -> Licence:
        """Issue the store's licence. Raises LicenceError (including too small)."""
        if self._licence is not None:
            raise LicenceError("a licence is already issued here: use 'licence amend'")
        licence = Licence.issue(
            self._time(None), customer=customer, limits=limits, total_pred_acd=total_pred_acd,
            expires_at=expires_at, policy=policy, cutoff_seconds=cutoff_seconds,
        )
        self._save(licence)
        return licence

    def start_trial(self, cutoff_seconds: int = DEFAULT_CUTOFF_SECONDS) -> bool:
        """Begin a new master's history (trial mode until a licence is installed), unless the
        store holds one already. Returns whether it began one."""
        if self._licence is not None:
            return False
        licence = Licence.start_trial(self._time(None), cutoff_seconds)
        self._save(licence)
        return True

    @property
    def master_key(self) -> str:
        """The fingerprint a vendor-signed licence must name to be installed here."""
        return key_fingerprint(self.public_key)

    def install_licence(self, terms: LicenceTerms, *, licence_file: str, sha256: str,
                        issuer: str) -> bool:
        """Install a vendor-signed licence whose signature the caller checked. Returns False
        (recording nothing) for the licence already installed. Raises LicenceError."""
        return self._command(lambda lic, now: lic.install(
            now, terms, licence_file=licence_file, sha256=sha256, issuer=issuer,
            master_key=self.master_key))

    def refuse_licence(self, *, sha256: str, reason: str, detail: str) -> None:
        """Record a refused licence file (its installation was refused, for ``reason``)."""
        self._command(lambda lic, now: lic.refuse_licence(now, sha256=sha256, reason=reason,
                                                          detail=detail))

    def amend_licence(self, **terms: Any) -> None:
        self._command(lambda lic, now: lic.amend(now, **terms))

    def enrol_site(self, name: str, fingerprint: str = "",
                   local_limits: Mapping[str, int] | None = None) -> None:
        self._command(lambda lic, now: lic.enrol_site(now, name, fingerprint, local_limits))

    def revoke_site(self, name: str) -> list[Release]:
        return self._command(lambda lic, now: lic.revoke_site(now, name))

    def release_seats(self, site: str, users: Sequence[str] | None = None) -> list[Release]:
        """An operator releases ``users``' seats at ``site`` (None: every seat held there),
        reason ``operator``, in one commit. Raises UnknownSiteError or UnknownSeatError, and
        then records nothing."""
        return self._command(lambda lic, now: lic.release_seats(now, site, users))

    @property
    def keep_fed(self) -> bool:
        """Whether each commit's records are kept for :meth:`take_fed` (a writer process
        answering its master; a master feeding its read models)."""
        return self._keep_fed

    @keep_fed.setter
    def keep_fed(self, keep: bool) -> None:
        self._keep_fed = self.sealer.keep_rows = keep
        if not keep:
            self._fed = []

    def take_fed(self) -> list[FedRow]:
        """The records committed since the last call (with :attr:`keep_fed`), in order, as
        the seal hashed them: (record id, originator id, version, topic, plaintext payload),
        for :meth:`absorb` and the read models' feed. Only committed records: a failed
        commit's are never here."""
        fed, self._fed = self._fed, []
        return fed

    def absorb(self, records: Sequence[FedRow]) -> None:
        """Apply to this copy's licence the records the writer process committed
        (:meth:`take_fed`): decoding their plaintexts costs less than unpickling events, and
        nothing needs decrypting.

        Raises StoreError if one cannot be decoded, or does not follow this copy's licence;
        then :meth:`reload`."""
        decode = self._plain.decode_event
        kind_of = self._plain.event_kind

        def events() -> Iterator[Any]:
            for _, oid, version, topic, payload in records:
                if oid == LICENCE_ID:
                    yield decode(kind_of(topic), _LICENCE_BYTES, oid, version, payload)

        try:
            self._licence = apply_events(self.licence, events())
        except (MapperDeserialisationError, OriginatorVersionError) as e:
            raise StoreError(f"the writer process's records do not follow: {e}") from e

    def adopt(self, licence: Licence) -> None:
        """Take ``licence`` as this copy's (the writer process loaded it from the store)."""
        self._licence = licence

    def reload(self) -> None:
        """Load the licence again from the store (what the writer process committed)."""
        self._licence = None
        self._load()

    def refresh(self) -> bool:
        """Catch up with records another process committed (an ``export run``, or an older
        tool, writing beside the master). Cheap when nothing changed: a master calls it
        before every batch. Returns True if it reloaded."""
        if not self._needs_reload and not self._committed_elsewhere():
            return False
        self._needs_reload = True  # until the reload succeeds: a failed one is retried
        self._open_seal()
        self._licence = None
        self._load()
        self._needs_reload = False
        return True

    def _committed_elsewhere(self) -> bool:
        """Whether the store holds records the seal in memory does not cover.

        On SQLite the store's top is read only when the commit connection's data version
        moved (another connection committed; this ledger's own commits leave it be). The
        version is read before the top, so a commit after that read moves it again. On
        PostgreSQL ids have gaps and there is nothing to compare: a commit racing another
        writer fails and reloads (see _save)."""
        if not self.contiguous_ids:
            return False
        try:
            version = self.recorder.data_version()
            if version == self._data_version:
                return False
            behind = self.max_id() != self.sealer.frontier.size
        except PersistenceError as e:
            raise StoreError(f"cannot read store: {_first_line(e)}") from e
        self._data_version = version
        return behind

    def execute(self, commands: Sequence[Command]) -> list[Outcome]:
        """Apply a batch of commands and commit them in one transaction.

        Returns one outcome per command (a Grant, Refusal, Release, SyncResult, list of
        Notices, None, or a Failure for a command rejected without a record). Raises
        StoreError if the commit fails, in which case nothing of the batch is recorded.
        """
        licence = self.licence
        now = self._time(licence)
        outcomes = [run_command(licence, now, c) for c in commands]
        self._save(licence)
        return outcomes

    def tick(self) -> list[Notice]:
        """Fire what is due now; return notices to broadcast."""
        return self._command(lambda lic, now: lic.tick(now))

    def record_export(self, day: str, first_id: int, last_id: int, destination: str,
                      sha256: str) -> None:
        self._command(lambda lic, now: lic.record_export(now, day, first_id, last_id,
                                                         destination, sha256))

    # ---------------------------------------------------------------- reading
    def notifications(self, start: int = 1, stop: int | None = None) -> Iterator[Notification]:
        """Stored records in notification order (raw, still encrypted)."""
        for n in self.recorder.iter_notifications(start):
            if stop is not None and n.id > stop:
                return
            yield n

    def decode(self, notification: Notification) -> Any:
        """A stored record as its domain event. Raises StoreError if it cannot be read."""
        try:
            return self.mapper.to_domain_event(notification)
        except MapperDeserialisationError as e:
            raise StoreError(f"record {notification.id}: {e}") from e

    def events(self, start: int = 1, stop: int | None = None) -> Iterator[tuple[int, Any]]:
        for n in self.notifications(start, stop):
            yield n.id, self.decode(n)

    def decoded(self, start: int = 1) -> Iterator[tuple[int, Any]]:
        """:meth:`events`, read faster on the compact store: a page of rows at a time, each
        topic and originator resolved once (the read models' follower reads the whole log
        this way). Raises StoreError for a record that cannot be read."""
        recorder = self.recorder
        if not isinstance(recorder, CompactSQLiteRecorder):
            yield from self.events(start)
            return
        decode = self.mapper.decode_event
        kinds: dict[int, EventKind] = {}
        origins: dict[int, tuple[UUID, bytes]] = {}
        for rows in recorder.iter_keyed_pages(20000, after=start - 1):
            for record_id, okey, version, tkey, state in rows:
                kind = kinds.get(tkey)
                if kind is None:
                    kind = kinds[tkey] = self.mapper.event_kind(recorder.topic_of(tkey))
                origin = origins.get(okey)
                if origin is None:
                    oid = recorder.originator_of(okey)
                    origin = origins[okey] = (oid, originator_bytes(oid))
                try:
                    event = decode(kind, origin[1], origin[0], version, state)
                except MapperDeserialisationError as e:
                    raise StoreError(f"record {record_id}: {e}") from e
                yield record_id, event

    def decode_fed(self, rows: Iterable[tuple[int, bytes, int, str, bytes]]
                   ) -> Iterator[tuple[int, Any]]:
        """(record id, event) for records fed by a writer (:meth:`take_fed`, the originator
        as its 16 bytes): as :meth:`decoded`, without reading or decrypting the store.
        Raises StoreError for a record that cannot be decoded."""
        plain = self._plain
        decode, kind_of = plain.decode_event, plain.event_kind
        origins: dict[bytes, UUID] = {}
        for record_id, oid_bytes, version, topic, payload in rows:
            oid = origins.get(oid_bytes)
            if oid is None:
                oid = origins[oid_bytes] = UUID(bytes=oid_bytes)
            try:
                event = decode(kind_of(topic), oid_bytes, oid, version, payload)
            except (MapperDeserialisationError, TopicError) as e:
                raise StoreError(f"record {record_id} as fed: {e}") from e
            yield record_id, event

    def max_id(self) -> int:
        return int(self.recorder.max_notification_id() or 0)

    def replay(self) -> Licence | None:
        """Rebuild the licence from every stored event, ignoring snapshots.

        Raises:
            eventsourcing's OriginatorVersionError: the licence's events are out of order.
            MapperDeserialisationError: a record cannot be read.
        """
        with collector_paused():
            if isinstance(self.recorder, CompactSQLiteRecorder):
                return self._replay_pages(self.recorder)
            licence: Licence | None = None
            for n in self.notifications():
                if n.originator_id == LICENCE_ID:
                    licence = self.mapper.to_domain_event(n).mutate(licence)
            return licence

    def _replay_pages(self, recorder: CompactSQLiteRecorder) -> Licence | None:
        """replay() on the compact store: the licence's rows as SQLite reads them (without
        the other originators' rows or the columns not needed), each topic resolved once,
        each row decoded straight into its event (SealedMapper.decode_rows), and applied
        by :func:`apply_events`."""
        topic_of = recorder.topic_of
        kinds: dict[int, EventKind] = {}
        return apply_events(None, chain.from_iterable(
            decode(LICENCE_ID, rows, topic_of, kinds)
            for decode, rows in self._replay_sources(recorder)))

    def _replay_sources(self, recorder: CompactSQLiteRecorder
                        ) -> Iterator[tuple[Callable[..., Iterator[Any]], list[Any]]]:
        """The licence's pages of rows, each with the decoder for it. Of a large store, where
        this process may fork, a child (ledger.persistence.forked) reads and decrypts them
        ahead while this process decodes and applies: decryption is a quarter of a replay.
        From the first page it did not send (it stops before one that fails authentication),
        they are read and decrypted here."""
        sent = 0
        child = self._decrypting_child(recorder)
        try:
            if child is not None:
                for rows in child.chunks():
                    yield self._plain.decode_rows, rows
                    sent += 1
            for rows in recorder.iter_originator_pages(LICENCE_ID, DECRYPTED_PAGE, sent):
                yield self.mapper.decode_rows, rows
        finally:
            if child is not None:
                child.close()

    def _decrypting_child(self, recorder: CompactSQLiteRecorder) -> Child | None:
        file, cipher = recorder.file, self.cipher
        key, top = recorder.originator_key_and_top(LICENCE_ID)
        if (file is None or cipher is None or key is None or top < SPLIT_ABOVE
                or not can_fork()):
            return None
        oid = LICENCE_ID.bytes

        def work() -> Iterator[list[tuple[int, int, bytes]]]:
            with read_only(file) as conn:
                c = conn.cursor()
                topics = {k: t.encode() for k, t in read_lookups(c)[1].items()}
                for start in range(0, top, DECRYPTED_PAGE):
                    opened = open_rows(cipher, oid, originator_page(c, key, start,
                                                                    DECRYPTED_PAGE), topics)
                    if opened is None:
                        return
                    yield opened

        return Child(work)

    def records(self, start: int = 1, stop: int | None = None
                ) -> Iterator[tuple[Notification, bytes]]:
        """Stored records with their plaintext payloads (what the seal hashes and exports carry).

        Raises StoreError for a record that fails authentication.
        """
        for n in self.notifications(start, stop):
            try:
                yield n, open_payload(self.cipher, n)
            except (InvalidTag, ValueError):
                raise StoreError(f"record {n.id} fails authentication: run 'seatledger audit verify'"
                                 ) from None

    def import_records(self, records: Iterable[ImportedRecord]) -> int:
        """Append records exported by another ledger unchanged (same ids, originators,
        versions, topics and payloads), so that this store's seal equals the sender's.

        Raises StoreError if a record's id does not continue this store's sequence.
        """
        count = 0
        batch: list[StoredEvent] = []
        expected = self.max_id() + 1

        def flush() -> None:
            if batch:
                try:
                    self.recorder.insert_events(batch)
                except PersistenceError as e:
                    raise StoreError(f"import failed: {_first_line(e)}") from e
                batch.clear()

        for r in records:
            if r.id != expected:
                raise StoreError(f"record {r.id} does not continue this store (expected {expected})")
            state = r.payload
            if self.cipher is not None:
                state = self.cipher.seal(r.payload, RowCipher.associated_data(
                    r.originator_id, r.version, r.topic))
            batch.append(StoredEvent(originator_id=r.originator_id, originator_version=r.version,
                                     topic=r.topic, state=state))
            expected += 1
            count += 1
            if len(batch) >= 1000:
                flush()
        self.sealer.sign_next_commit()  # the imported history ends on a signed row
        flush()
        self._licence = None
        self._load()
        return count

    def verify(self, progress: Callable[[int], None] | None = None) -> VerifyReport:
        """Verify every stored record against the seal (see ledger.seal)."""
        try:
            rows, frontier = self.recorder.read_seal()
        except PersistenceError as e:
            raise StoreError(f"cannot read the seal: {_first_line(e)}") from e
        note = None
        if self.checkpoint_file is not None and self.checkpoint_file.exists():
            note = self.checkpoint_file.read_text()
        keyed = isinstance(self.recorder, CompactSQLiteRecorder)
        ahead = self._verify_ahead() if keyed else None
        # With a child opening the records after ahead.split, this process reads up to there.
        records = (chain.from_iterable(self.recorder.iter_keyed_pages(
                       upto=ahead.split if ahead is not None else TOP_ID)) if keyed
                   else self.recorder.iter_rows())
        with collector_paused():
            report = verify_records(
                records,
                rows,
                frontier,
                public_key=self.public_key,
                note_key=self.note_key,
                origin=self.origin,
                cipher=self.cipher,
                decode_state=self.mapper.transcoder.decode,
                checkpoint_note=note,
                contiguous_ids=self.contiguous_ids,
                progress=progress,
                originator_of=self.recorder.originator_of if keyed else None,
                topic_of=self.recorder.topic_of if keyed else None,
                ahead=ahead,
            )
        return self._check_external_checkpoint(report)

    def _verify_ahead(self) -> ForkedAhead | None:
        """The second core's part of verifying a large compact store (ledger.seal.ahead):
        the later half of its records, where this process may fork."""
        file = self.recorder.file
        top = self.max_id()
        if file is None or not self.contiguous_ids or top < SPLIT_ABOVE or not can_fork():
            return None
        recorder = self.recorder
        return ForkedAhead(file, top // 2 // PAGE * PAGE,
                           self.cipher._aead.decrypt if self.cipher is not None else None,
                           lambda after: chain.from_iterable(recorder.iter_keyed_pages(after=after)))

    def _check_external_checkpoint(self, report: VerifyReport) -> VerifyReport:
        """A missing (or once lost) checkpoint file fails verification: without it a
        truncated tail cannot be told from an honest store."""
        if not report.ok or self.checkpoint_file is None or not report.records:
            return report
        lost = _lost_marker(self.checkpoint_file)
        reason = None
        if not self.checkpoint_file.exists():
            reason = (f"the checkpoint kept outside the store ({self.checkpoint_file}) is "
                      "missing: the end of the history cannot be confirmed")
        elif lost.exists():
            size = lost.read_text().strip()
            reason = (f"the checkpoint kept outside the store was found missing when the "
                      f"store held {size} records; records up to there cannot be confirmed "
                      f"against it (delete {lost} to accept this)")
        if reason is None:
            return report
        return attrs.evolve(report, problem=Problem(report.records, reason))


def apply_events(licence: Licence | None, events: Iterable[Any]) -> Licence | None:
    """``licence`` (None: not yet begun) after ``events``, in order: eventsourcing's
    mutate(), done inline where an event class keeps the library's, with the same checks
    (the version follows; the caller's events are all the licence's) and the same
    bookkeeping (version and modified_on). Seat events' counts in the pools are kept aside
    between other events (Licence.count_later): most of a log is seat events, and a pool
    made anew for each is most of their cost. So is the bookkeeping of a run of seat events
    (no apply() reads it), done once for its last (see settle).

    Raises eventsourcing's OriginatorVersionError for an event out of order."""
    plain_mutate = CanMutateAggregate.mutate
    # By event class: its apply() where mutate() is the library's (None where it is the
    # class's own, as for the first event), and whether its seat counts may wait.
    classes: dict[type, tuple[Callable[[Any, Licence], None] | None, bool]] = {}
    version = 0
    last_seat_event: Any = None  # applied, but not yet in the licence's bookkeeping

    def settle(licence: Licence, last_seat_event: Any) -> None:
        """What is left waiting: the seat counts kept aside, and the version and
        modified_on of the last seat event applied (if any since the licence had them)."""
        licence.count_now()
        if last_seat_event is not None:
            licence.version = last_seat_event.originator_version
            licence.modified_on = last_seat_event.timestamp

    if licence is not None:
        version = licence.version
        licence.count_later()
    try:
        for event in events:
            cls: Any = type(event)
            known = classes.get(cls)
            if known is None:
                known = classes[cls] = (cls.apply if cls.mutate is plain_mutate else None,
                                        cls.counts_seats_only)
            apply, seats_only = known
            if apply is None or licence is None:
                if licence is not None:
                    settle(licence, last_seat_event)
                    last_seat_event = None
                licence = event.mutate(licence)
                if licence is not None:
                    licence.count_later()
                    version = licence.version
                continue
            event_version = event.originator_version
            if event_version != version + 1:
                raise OriginatorVersionError(event_version, version + 1)
            version = event_version
            if seats_only:
                apply(event, licence)
                last_seat_event = event
                continue
            settle(licence, last_seat_event)
            last_seat_event = None
            apply(event, licence)
            licence.count_later()
            licence.version = event_version
            licence.modified_on = event.timestamp
    finally:
        if licence is not None:
            settle(licence, last_seat_event)
    return licence


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """``sha256:<hex>`` of an Ed25519 public key's 32 raw bytes: how a licence names the
    master it is bound to."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _disk_full_hint(env: Mapping[str, str]) -> str:
    """' (the disk holding it is full)' when that explains an SQLite failure, else ''."""
    name = env.get("SQLITE_DBNAME")
    if not name:
        return ""
    try:
        free = shutil.disk_usage(Path(name).parent).free
    except OSError:
        return ""
    return " (the disk holding it is full)" if free < DISK_FULL_BYTES else ""


def _lost_marker(checkpoint_file: Path) -> Path:
    return checkpoint_file.with_name(checkpoint_file.name + ".lost")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}@{host}"
    return url


__all__ = ["LedgerApp", "LedgerError"]
