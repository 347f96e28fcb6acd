"""The audit seal: a Merkle tree over the stored records, signed checkpoints, verification.

Every commit extends an RFC 9162 Merkle tree whose leaves are the stored records in
notification order, and writes, in the same transaction, the tree's frontier and a checkpoint
row (tree size, root). Not every checkpoint row is signed: an Ed25519 signature over the C2SP
checkpoint body costs more than a lightly loaded master's whole commit, and its 64 bytes more
than the record it covers. A row is signed

* every ``sign_every_records`` records (default 1,000),
* on the first commit after opening, on the commit recording an AuditCheckpointSigned event,
  and at the end of an import;

the rows in between carry the root without a signature (an empty one), and are deleted when
the next signed row is written, so that the store keeps one signed row per
``sign_every_records`` records plus at most that many unsigned rows. Separately, at most
``sign_every_seconds`` (default 1 s) of ledger time after a commit, the latest tree is signed
into the file outside the store (``seal/latest.checkpoint``): at the next commit or idle tick
once that time passed, the file rewritten at most every FILE_INTERVAL (0.5 s) of wall time,
and at close. That file stores nothing per record, so it can be signed by time whatever the
load. A crash between signatures
loses nothing: the frontier and the unsigned rows were committed with the records.

Every ``checkpoint_every`` records the application records an AuditCheckpointSigned event
holding a signed note; those travel in the daily export.

Verification re-reads every record and checks, in one pass: ids without gaps, each
originator's versions in order, each state's AES-GCM tag (which binds the state to its row),
and the Merkle root at every stored checkpoint row, signed or not, and at the checkpoint file.
It names the first bad record and why. Beyond reading, decrypting and hashing, its cost is the
Python work per record, so it works a page of PAGE records at a time: a page of one originator's consecutive records (nearly every page: a ledger's store holds
little but its licence) is checked as whole sequences, decrypted in one comprehension and hashed
by map() into perfect subtrees (``merkle.subtree_levels``), from which the roots at the sizes
inside the page are taken. Any other page, or one where a state fails authentication, is gone
through record by record to find its first bad record; the checks at checkpoint sizes and of
recorded checkpoints then run in record order up to that record, so what is found first is
named, as record by record. A large SQLite store is verified on two cores: a forked child
reads, decrypts and hashes the later half (ledger.seal.ahead), and the pages it opened are
checked where they join the records before them, with the same report.

What an unsigned tail leaves open. Anyone who can write the store can also rewrite its
unsigned rows. Changing one makes verification fail: the root recomputed from the records is
compared with it, and with the next signed checkpoint (a later signed row or the file), which
decides which was altered. Record-level edits stay named exactly by the per-record checks, and
a record replaced by a key holder is named by the first unsigned row whose root disagrees.
What such a person can do undetected locally is remove the records after the last signature
together with their unsigned rows and a matching older frontier: the file outside the store
pins the tree only up to its own size, and that size is at most ``sign_every_seconds`` of
ledger time (and ``sign_every_records`` records) behind the last commit. This window is the
price of not signing every commit; a re-sealed store is caught only by the vendor in any case
(docs/threat-model.md).
"""

from __future__ import annotations

import os
import struct
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import islice, repeat
from pathlib import Path
from typing import Any, Protocol

import attrs
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.persistence import Notification

from ledger.errors import CheckpointError, StoreError
from ledger.persistence.codec import RowCipher, unpack_payload
from ledger.persistence.store import SealHook
from ledger.seal.checkpoint import Checkpoint, note_with_signature, open_checkpoint, sign_checkpoint
from ledger.seal.merkle import (
    EMPTY_ROOT,
    Frontier,
    Levels,
    leaf_hash,
    leaf_hashes,
    subtree_levels,
)

CHECKPOINT_TOPIC_SUFFIX = "Licence.AuditCheckpointSigned"
DEFAULT_SIGN_EVERY_RECORDS = 1000
DEFAULT_SIGN_EVERY_SECONDS = 1.0
FILE_INTERVAL = 0.5  # wall-clock seconds between rewrites of the latest-checkpoint file
_pack = struct.Struct(">Q").pack
_NONCE = RowCipher.NONCE


def leaf_bytes(record_id: int, originator_id: Any, version: int, topic: str,
               payload: bytes) -> bytes:
    """The bytes a record contributes to the tree.

    ``id (8, big-endian) || originator id (16) || version (8) || topic || 0x0A || payload``,
    where payload is the record's plaintext (the flagged, possibly compressed MessagePack
    that the at-rest cipher protects). Sealing the plaintext rather than the ciphertext lets
    a recipient of the export, who never holds the at-rest key, recompute every leaf.
    """
    return (_pack(record_id) + originator_bytes(originator_id) + _pack(version)
            + topic.encode() + b"\n" + payload)


def originator_bytes(originator_id: Any) -> bytes:
    """An originator id as a record's leaf and associated data hold it."""
    return originator_id.bytes if hasattr(originator_id, "bytes") else str(originator_id).encode()


def record_heads(originators: Iterable[bytes], versions: Iterable[int], topics: Iterable[Any],
                 topic_bytes: Mapping[Any, bytes]) -> list[bytes]:
    """Each record's head, ``originator || version || topic`` (of ``topic_bytes[topic key]``):
    its associated data, and its leaf but for the id and the payload."""
    return [ob + _pack(version) + topic_bytes[tkey]
            for ob, version, tkey in zip(originators, versions, topics, strict=False)]


def open_states(decrypt: Callable[[bytes, bytes, bytes], bytes] | None, states: Sequence[bytes],
                heads: Sequence[bytes]) -> list[bytes] | None:
    """The plaintexts of stored ``states`` (with their ``heads``, the associated data), or
    None if one fails authentication; the states themselves with no cipher."""
    if decrypt is None:
        return list(states)
    try:
        return [decrypt(stored[:_NONCE], stored[_NONCE:], head)
                for stored, head in zip(states, heads, strict=True)]
    except (InvalidTag, ValueError):
        return None


def leaves(ids: Iterable[int], heads: Iterable[bytes], plaintexts: Iterable[bytes]
           ) -> list[bytes]:
    """leaf_bytes() of each record, from its id, head and plaintext."""
    return list(map(b"".join, zip(map(_pack, ids), heads, repeat(b"\n"), plaintexts,
                                  strict=False)))


def open_payload(cipher: RowCipher | None, n: Notification) -> bytes:
    """A stored record's plaintext payload. Raises InvalidTag if it fails authentication."""
    if cipher is None:
        return n.state
    return cipher.open(n.state, RowCipher.associated_data(n.originator_id, n.originator_version,
                                                           n.topic))


_RECENT_CAP = 1 << 16


class Sealer(SealHook):
    """Extends the tree inside each insert transaction; see the module docstring.

    ``clock`` reads ledger time in seconds (the file outside the store is re-signed when
    ``sign_every_seconds`` of it passed since the last signature).
    """

    def __init__(self, frontier: Frontier, signing_key: Ed25519PrivateKey, origin: str,
                 checkpoint_file: Path | None, *, cipher: RowCipher | None,
                 contiguous_ids: bool = True,
                 sign_every_records: int = DEFAULT_SIGN_EVERY_RECORDS,
                 sign_every_seconds: float = DEFAULT_SIGN_EVERY_SECONDS,
                 clock: Callable[[], float] = time.time):
        if sign_every_records < 1 or sign_every_seconds < 0:
            raise ValueError("sign_every_records must be at least 1, sign_every_seconds >= 0")
        self.cipher = cipher
        self._public_key = signing_key.public_key()
        # The latest signed note and the tree size it covers.
        self._note: str | None = None
        self._note_size = -1
        self._noted_at: float | None = None  # ledger time of the latest signature
        self._file_stale = False  # this sealer committed records no signature covers
        self._file_behind = False  # a signed note the file outside the store lags
        self._file_written = -FILE_INTERVAL
        # The first commit after opening is signed: it closes a crashed session's tail.
        self._sign_next = True
        self._signed_size = frontier.size
        # Plaintexts the mapper just encrypted, so sealing need not decrypt them again.
        self.recent_payloads: dict[tuple[Any, int], bytes] = {}
        self.keep_rows = False
        """Keep each sealed transaction's rows with their plaintexts (:attr:`sealed_rows`)."""
        self.sealed_rows: list[tuple[int, Any, int, str, bytes]] = []
        """With :attr:`keep_rows`: the rows the latest :meth:`seal_in_transaction` sealed, as
        (record id, originator id, version, topic, plaintext payload). Its transaction may
        still fail: the ledger takes them only once it has committed."""
        self.frontier = frontier
        self.signing_key = signing_key
        self.origin = origin
        self.checkpoint_file = checkpoint_file
        self.contiguous_ids = contiguous_ids
        self.sign_every_records = sign_every_records
        self.sign_every_seconds = sign_every_seconds
        self.clock = clock

    def sign_next_commit(self) -> None:
        """Sign the checkpoint row of the next commit, whatever the cadence."""
        self._sign_next = True

    def seal_in_transaction(self, execute: Callable[..., Any],
                            rows: Sequence[tuple[int, Any, int, str, bytes]]) -> Any:
        f = self.frontier.copy()
        recent = self.recent_payloads
        kept: list[tuple[int, Any, int, str, bytes]] | None = [] if self.keep_rows else None
        for record_id, originator_id, version, topic, stored in rows:
            if self.contiguous_ids and record_id != f.size + 1:
                raise StoreError(
                    f"refusing to commit: record {record_id} would follow a seal of {f.size} "
                    "records; the store was altered (run 'seatledger audit verify')"
                )
            payload = recent.pop((originator_id, version), None)
            if payload is None:
                payload = open_payload(self.cipher, Notification(
                    id=record_id, originator_id=originator_id, originator_version=version,
                    topic=topic, state=stored))
            f.append(leaf_hash(leaf_bytes(record_id, originator_id, version, topic, payload)))
            if kept is not None:
                kept.append((record_id, originator_id, version, topic, payload))
        if len(recent) > _RECENT_CAP:
            # Not emptied each time: the next batch may be being encoded meanwhile (an
            # overlapped commit). What stays is a discarded batch's: bounded, and replaced.
            recent.clear()
        if kept is not None:
            self.sealed_rows = kept
        root = f.root()
        body: str | None = None
        signature: bytes | None = None
        if self._sign_next or f.size - self._signed_size >= self.sign_every_records:
            body = Checkpoint(self.origin, f.size, root).body()
            signature = self.signing_key.sign(body.encode())
            execute(
                "INSERT INTO seal_checkpoints (tree_size, root, signature, signed_at) "
                "VALUES (?, ?, ?, ?)",
                (f.size, root, signature, time.time()),
            )
            # The signed row binds every record before it: the unsigned rows are spent.
            execute("DELETE FROM seal_frontiers WHERE tree_size < ?", (f.size,))
        else:
            execute("INSERT INTO seal_frontiers (tree_size, root) VALUES (?, ?)", (f.size, root))
        execute(
            "INSERT INTO seal_state (id, frontier) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET frontier = excluded.frontier",
            (f.to_bytes(),),
        )
        return f, body, signature

    def committed(self, token: Any) -> None:
        self.frontier, body, signature = token
        if signature is not None:
            self._sign_next = False
            self._signed_size = self.frontier.size
            self._take_note(note_with_signature(body, self.origin, self._public_key, signature))
        else:
            self._file_stale = True
        self.note_if_due()

    def note_if_due(self) -> None:
        """Sign the latest tree into the file outside the store if ``sign_every_seconds`` of
        ledger time passed since the last signature, and write a signed note the file lags
        (cheap when neither is due). The file is rewritten at most every FILE_INTERVAL
        seconds: a rename costs more than a lightly loaded master's whole commit."""
        if not (self._file_stale or self._file_behind):
            return
        if time.monotonic() - self._file_written < FILE_INTERVAL:
            return
        if self._file_stale:
            noted_at = self._noted_at
            if noted_at is None or self.clock() - noted_at >= self.sign_every_seconds:
                self.signed_note()
        if self._file_behind:
            self._write_file()

    def flush(self) -> None:
        """Sign the latest tree, if this sealer committed records no signature covers, and
        write it to the file outside the store if the file lags (at close)."""
        if self._file_stale:
            self.signed_note()
        if self._file_behind:
            self._write_file()

    def _take_note(self, note: str) -> None:
        self._note = note
        self._note_size = self.frontier.size
        self._noted_at = self.clock()
        self._file_stale = False
        self._file_behind = True

    def _write_file(self) -> None:
        if self.checkpoint_file is not None and self._note is not None:
            write_atomic(self.checkpoint_file, self._note.encode())
        self._file_written = time.monotonic()
        self._file_behind = False

    def signed_note(self) -> str:
        """The latest checkpoint as a C2SP signed note (signed now if the tree grew since the
        latest signature)."""
        if self._note is None or self._note_size != self.frontier.size:
            cp = Checkpoint(self.origin, self.frontier.size, self.frontier.root())
            note = sign_checkpoint(cp, self.origin, self.signing_key)
            if self._file_stale:
                self._take_note(note)
            else:  # nothing new was committed here: another process keeps the file
                self._note, self._note_size = note, self.frontier.size
        assert self._note is not None
        return self._note


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- verification
@attrs.frozen
class Problem:
    record: int
    reason: str


@attrs.frozen
class VerifyReport:
    records: int
    checkpoints: int
    signed_notes: int
    root: bytes
    problem: Problem | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "signed_notes": self.signed_notes,
            "root": self.root.hex(),
            "first_bad_record": self.problem.record if self.problem else None,
            "reason": self.problem.reason if self.problem else None,
        }


class _Found(Exception):
    def __init__(self, record: int, reason: str):
        self.problem = Problem(record, reason)


Row = tuple[int, Any, int, Any, bytes]  # id, originator, version, topic, stored state
PAGE = 1024  # records verified together (a power of two: a perfect subtree of the tree)


@attrs.frozen
class OpenedPage:
    """A page of records opened without the records before it (see :class:`Ahead`): its
    ids ``first_id`` onwards without a gap, each originator's versions in order from
    ``firsts`` to ``lasts`` (by originator key), every state authentic. ``levels`` holds
    the subtrees over its leaves that the tree needs at its end and at the checkpoint sizes
    inside it (``levels[height][index]``, as :func:`merkle.subtree_levels` gives them), and
    ``notes`` the plaintexts of its recorded checkpoints by position in the page."""

    first_id: int
    count: int
    firsts: dict[Any, int]
    lasts: dict[Any, int]
    levels: list[dict[int, bytes]]
    notes: dict[int, bytes]


class Ahead(Protocol):
    """Records after ``split`` opened elsewhere (another core) while the first ``split`` are
    verified: verify_records checks each page's seams, checkpoints and notes as it would the
    records', and verifies from the records themselves where a page does not follow on."""

    split: int

    def start(self, stops: list[int]) -> None:
        """Begin opening (the tree sizes checks are due at: their subtrees are kept)."""

    def pages(self) -> Iterable[OpenedPage]:
        """The pages after ``split``, in order: all of them, or those before the first one
        that did not open (or none if opening failed)."""

    def rows_after(self, record_id: int) -> Iterable[Row]:
        """The records after id ``record_id``, as they are stored."""

    def close(self) -> None:
        """Stop opening, if it still is."""


def verify_records(
    rows: Iterable[Row],
    seal_rows: Sequence[tuple[int, bytes, bytes, float]],
    frontier_state: bytes | None,
    *,
    public_key: Ed25519PublicKey,
    origin: str,
    cipher: RowCipher | None,
    note_key: Ed25519PublicKey | None = None,
    decode_state: Callable[[bytes], dict[str, Any]],
    checkpoint_note: str | None = None,
    contiguous_ids: bool = True,
    progress: Callable[[int], None] | None = None,
    originator_of: Callable[[Any], Any] | None = None,
    topic_of: Callable[[Any], str] | None = None,
    ahead: Ahead | None = None,
) -> VerifyReport:
    """Check every record against the seal. Never raises for a bad store: it reports.

    ``seal_rows`` are the stored checkpoint rows (an empty signature marks an unsigned one).
    A row's originator and topic may be keys that ``originator_of`` and ``topic_of`` turn
    into the originator id and topic (a store's lookup tables); by default they are those.
    ``progress`` is called with the number of records verified after each page of them.
    With ``ahead``, ``rows`` are the first ``ahead.split`` records and ``ahead`` has the rest
    (the report is the same).
    """
    signed: dict[int, list[tuple[bytes, bytes]]] = {}
    unsigned: dict[int, bytes] = {}
    for size, sealed_root, sig, _ in seal_rows:
        if sig:
            signed.setdefault(size, []).append((sealed_root, sig))
        else:
            unsigned[size] = sealed_root
    file_cp: Checkpoint | None = None
    file_error: str | None = None
    if checkpoint_note is not None:
        try:
            file_cp = open_checkpoint(checkpoint_note, origin, public_key)
        except CheckpointError as e:
            file_error = str(e)
    stops = sorted(set(signed) | set(unsigned) | ({file_cp.size} if file_cp else set()))
    roots: dict[int, bytes] = {0: EMPTY_ROOT}
    check = _Checker(signed, unsigned, file_cp, roots, public_key, origin)
    pages = _Pages(check, stops, roots, note_key or public_key, origin, cipher, decode_state,
                   contiguous_ids, originator_of, topic_of)
    try:
        try:
            if ahead is not None:
                ahead.start(stops)
            _verify_pages(pages, rows, progress)
            if ahead is not None:
                if pages.frontier.size == ahead.split:
                    for opened in ahead.pages():
                        if not pages.accept(opened):
                            break
                        if progress is not None:
                            progress(pages.frontier.size)
                _verify_pages(pages, ahead.rows_after(pages.expected - 1), progress)
        finally:
            if ahead is not None:
                ahead.close()
        size = pages.frontier.size
        root = pages.frontier.root()
        check.finish()
        if seal_rows:
            top = max(r[0] for r in seal_rows)
            if top > size:
                raise _Found(size + 1, f"missing: the seal covers {top} records but the store "
                                       f"ends at {size} (truncated)")
        if size > check.last_good:
            raise _Found(check.last_good + 1,
                         "not covered by any checkpoint: written outside the ledger")
        if frontier_state is None:
            if size:
                raise _Found(size + 1, "the seal state is missing")
        else:
            try:
                state_frontier = Frontier.from_bytes(frontier_state)
            except ValueError as e:
                raise _Found(size + 1, f"the seal state is damaged: {e}") from None
            if state_frontier.size != size or state_frontier.root() != root:
                raise _Found(min(state_frontier.size, size) + 1,
                             f"the seal state covers {state_frontier.size} records, "
                             f"the store holds {size}")
        if file_error is not None:
            raise _Found(size + 1, f"latest checkpoint file: {file_error}")
        if file_cp is not None and file_cp.size > size:
            raise _Found(size + 1, f"missing: the latest checkpoint covers {file_cp.size} "
                                   f"records but the store ends at {size} (truncated)")
    except _Found as found:
        return VerifyReport(pages.frontier.size, check.checkpoints, pages.notes,
                            pages.frontier.root(), found.problem)
    return VerifyReport(size, check.checkpoints, pages.notes, root, None)


def _verify_pages(pages: _Pages, rows: Iterable[Row], progress: Callable[[int], None] | None
                  ) -> None:
    rest = iter(rows)
    while page := list(islice(rest, PAGE)):
        pages.verify(page)
        if progress is not None:
            progress(pages.frontier.size)


class _Pages:
    """verify_records' pass over the records, a page at a time (see the module docstring).

    verify() raises what the first bad record or check raised (_Found, for a problem found),
    with the frontier as it was there.
    """

    def __init__(self, check: _Checker, stops: list[int], roots: dict[int, bytes],
                 note_key: Ed25519PublicKey, origin: str, cipher: RowCipher | None,
                 decode_state: Callable[[bytes], dict[str, Any]], contiguous_ids: bool,
                 originator_of: Callable[[Any], Any] | None,
                 topic_of: Callable[[Any], str] | None):
        self.check = check
        self.stops = stops
        self.next_stop = bisect_right(stops, 0)  # a size of 0 or less covers no record
        self.roots = roots
        self.note_key = note_key
        self.origin = origin
        self.decrypt = cipher._aead.decrypt if cipher is not None else None
        self.decode_state = decode_state
        self.contiguous_ids = contiguous_ids
        self.originator_of = originator_of
        self.topic_of = topic_of
        self.frontier = Frontier()
        self.notes = 0
        self.expected = 1  # the next record's id
        self.last_version: dict[Any, int] = {}  # by originator (key)
        self.originators: dict[Any, bytes] = {}  # originator id bytes by key
        self.topics: dict[Any, bytes] = {}  # topic bytes by key
        self.note_topics: set[Any] = set()  # the keys of CHECKPOINT_TOPIC_SUFFIX topics

    def verify(self, page: list[Row]) -> None:
        """Check the next page of (at most PAGE) records."""
        ids, okeys, versions, tkeys, states = zip(*page, strict=True)
        present = set(tkeys)
        # A topic first seen is looked up record by record (in record order, up to the
        # first bad record, as a lookup can fail).
        opened = (self._open_run(ids, okeys, versions, tkeys, states)
                  if present.issubset(self.topics) else None)
        heads, plaintexts, problem = opened or self._open_each(page)
        good = len(heads)  # the records before the first bad one
        notes = ([i for i, tkey in enumerate(tkeys[:good]) if tkey in self.note_topics]
                 if not present.isdisjoint(self.note_topics) else [])
        self._settle(subtree_levels(leaf_hashes(leaves(ids, heads, plaintexts))), good, ids,
                     notes, plaintexts)
        if problem is not None:
            raise problem

    def accept(self, opened: OpenedPage) -> bool:
        """Check a page opened ahead (see :class:`Ahead`) as :meth:`verify` would its
        records; False, having checked nothing, where it does not follow on from the records
        before it (it is then to be verified from its records)."""
        last_version = self.last_version
        if opened.first_id != self.expected or any(
                first != last_version.get(okey, 0) + 1 for okey, first in opened.firsts.items()):
            return False
        last_version.update(opened.lasts)
        self.expected = opened.first_id + opened.count
        self._settle(opened.levels, opened.count,
                     range(opened.first_id, opened.first_id + opened.count),
                     sorted(opened.notes), opened.notes)
        return True

    def _settle(self, levels: Levels, good: int, ids: Sequence[int], notes: list[int],
                plaintexts: Mapping[int, bytes] | Sequence[bytes]) -> None:
        """The checks of a page whose first ``good`` records opened, given the subtrees over
        their leaves (``levels``), the positions of their recorded checkpoints (``notes``),
        and the plaintexts there; then the tree grows by them."""
        start = self.frontier.size
        stops = self.stops[self.next_stop:bisect_right(self.stops, start + good)]
        self.next_stop += len(stops)
        # In record order, each at the number of the page's leaves in the tree then: a
        # record's note is checked before its leaf joins the tree, a stop as soon as the tree
        # reaches its size (so a stop comes first where both are at the same count).
        checks = sorted([(stop - start, False) for stop in stops] + [(i, True) for i in notes])
        try:
            for at, is_note in checks:
                if is_note:
                    self.notes += 1
                    _check_note(ids[at], self.decode_state(unpack_payload(plaintexts[at])),
                                self.roots, self.note_key, self.origin)
                else:
                    self._stop(levels, at, ids[at - 1])
        except _Found:
            self.frontier.extend(levels, at)
            raise
        self.frontier.extend(levels, good)

    def _stop(self, levels: Levels, count: int, record_id: int) -> None:
        """The checks where the tree reaches a stored checkpoint's size (the page's first
        ``count`` records in it)."""
        tree = self.frontier.copy()
        tree.extend(levels, count)
        self.check.at(tree.size, record_id, tree.root())

    def _originator(self, okey: Any) -> bytes:
        known = self.originators.get(okey)
        if known is None:
            oid = self.originator_of(okey) if self.originator_of is not None else okey
            known = self.originators[okey] = originator_bytes(oid)
        return known

    def _topic(self, tkey: Any) -> bytes:
        known = self.topics.get(tkey)
        if known is None:
            name = self.topic_of(tkey) if self.topic_of is not None else tkey
            known = self.topics[tkey] = name.encode()
            if name.endswith(CHECKPOINT_TOPIC_SUFFIX):
                self.note_topics.add(tkey)
        return known

    def _open_run(self, ids: tuple[int, ...], okeys: tuple[Any, ...], versions: tuple[int, ...],
                  tkeys: tuple[Any, ...], states: tuple[bytes, ...]
                  ) -> tuple[list[bytes], list[bytes], None] | None:
        """A page of consecutive records of one originator as a whole: each record's head
        (originator || version || topic) and plaintext; None if it is not such a page or a
        state fails authentication."""
        okey = okeys[0]
        first = self.last_version.get(okey, 0) + 1
        expected = self.expected
        if (okeys.count(okey) != len(okeys) or versions != tuple(range(first, first + len(ids)))
                or self.contiguous_ids and ids != tuple(range(expected, expected + len(ids)))):
            return None
        heads = record_heads(repeat(self._originator(okey)), versions, tkeys, self.topics)
        plaintexts = open_states(self.decrypt, states, heads)
        if plaintexts is None:
            return None
        self.last_version[okey] = versions[-1]
        self.expected = ids[-1] + 1
        return heads, plaintexts, None

    def _open_each(self, page: list[Row]) -> tuple[list[bytes], list[bytes], Exception | None]:
        """_open_run record by record, for any page: the heads and plaintexts of the records
        before the first bad one, and what it raised (_Found, or a key's lookup failing),
        for verify() to raise once the records before it are checked; None if none is bad."""
        heads: list[bytes] = []
        plaintexts: list[bytes] = []
        for row in page:
            try:
                head, plaintext = self._open(*row)
            except Exception as e:
                return heads, plaintexts, e
            heads.append(head)
            plaintexts.append(plaintext)
        return heads, plaintexts, None

    def _open(self, record_id: int, okey: Any, version: int, tkey: Any, stored: bytes
              ) -> tuple[bytes, bytes]:
        """One record's head and plaintext; raises _Found if it is out of order or fails
        authentication."""
        expected = self.expected
        if record_id != expected and self.contiguous_ids:
            if record_id > expected:
                raise _Found(expected, f"missing (the next stored record is {record_id})")
            raise _Found(record_id, f"out of order: follows record {expected - 1}")
        ob = self._originator(okey)
        prev = self.last_version.get(okey, 0)
        if version != prev + 1:
            oid = self.originator_of(okey) if self.originator_of is not None else okey
            raise _Found(record_id, f"version {version} of {oid} follows version {prev}: "
                                    "reordered, removed or re-used")
        head = ob + _pack(version) + self._topic(tkey)
        plaintext = stored
        if self.decrypt is not None:
            try:
                plaintext = self.decrypt(stored[:_NONCE], stored[_NONCE:], head)
            except (InvalidTag, ValueError):
                raise _Found(record_id, "state fails authentication: altered, or moved from "
                                        "another record") from None
        self.last_version[okey] = version
        self.expected = record_id + 1
        return head, plaintext


class _Checker:
    """The comparisons at tree sizes the seal recorded a root for.

    A signed root (a signed row, or the file outside the store) binds the records before it.
    An unsigned row could have been rewritten by anyone who can write the store, so a
    mismatch there is held as a suspicion until the next signed root decides: if the
    records match it, the unsigned row was altered; if not, the records were, from the
    first one after the last size that matched.
    """

    def __init__(self, signed: dict[int, list[tuple[bytes, bytes]]], unsigned: dict[int, bytes],
                 file_cp: Checkpoint | None, roots: dict[int, bytes],
                 public_key: Ed25519PublicKey, origin: str):
        self.signed = signed
        self.unsigned = unsigned
        self.file_cp = file_cp
        self.roots = roots
        self.public_key = public_key
        self.origin = origin
        self.last_good = 0
        self.checkpoints = 0
        self.suspect: _Found | None = None
        self.suspect_size = 0

    def _mismatch(self, size: int, what: str) -> _Found:
        first = self.last_good + 1
        where = f"record {first}" if first == size else f"records {first}-{size}"
        return _Found(first, f"does not match {what} ({where} altered, replaced or re-used)")

    def at(self, size: int, record_id: int, root: bytes) -> None:
        self.roots[size] = root
        anchored = False
        sealed = self.unsigned.get(size)
        if sealed is not None:
            self.checkpoints += 1
            if sealed != root and self.suspect is None:
                self.suspect = self._mismatch(size, f"the checkpoint stored for {size} records")
                self.suspect_size = size
        for sealed, sig in self.signed.get(size, ()):
            self.checkpoints += 1
            body = Checkpoint(self.origin, size, sealed).body().encode()
            try:
                self.public_key.verify(sig, body)
            except InvalidSignature:
                raise _Found(record_id, f"the checkpoint for {size} records has a bad "
                                        "signature") from None
            if sealed != root:
                raise self.suspect or self._mismatch(
                    size, f"the checkpoint signed for {size} records")
            anchored = True
        cp = self.file_cp
        if cp is not None and cp.size == size:
            if cp.root != root:
                raise self.suspect or self._mismatch(size, "the latest checkpoint file")
            anchored = True
        if self.suspect is not None:
            if anchored:
                raise _Found(self.suspect_size, f"the unsigned checkpoint stored for "
                                                f"{self.suspect_size} records was altered: the "
                                                f"records match the checkpoint signed for {size}")
            return
        self.last_good = size

    def finish(self) -> None:
        """After the last record: a suspicion no signed root decided is reported as found."""
        if self.suspect is not None:
            raise self.suspect


def _check_note(record: int, state: dict[str, Any], roots: dict[int, bytes],
                public_key: Ed25519PublicKey, origin: str) -> None:
    try:
        cp = open_checkpoint(state["note"], origin, public_key)
    except (CheckpointError, KeyError) as e:
        raise _Found(record, f"recorded checkpoint does not verify: {e}") from None
    if roots.get(cp.size) not in (None, cp.root):
        raise _Found(record, f"recorded checkpoint for {cp.size} records disagrees with the log")
