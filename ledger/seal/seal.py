"""The audit seal: a Merkle tree over the stored records, signed checkpoints, verification.

Every commit extends an RFC 9162 Merkle tree whose leaves are the stored records in
notification order, and writes, in the same transaction, a checkpoint row (tree size, root,
Ed25519 signature over the C2SP checkpoint body) and the tree's frontier. After the commit
the latest checkpoint is also written as a signed note to a file outside the store, so a
truncated store cannot pass for a complete one. Every ``checkpoint_every`` records the
application records an AuditCheckpointSigned event holding a signed note; those travel in
the daily export.

Verification re-reads every record and checks, in one pass: ids without gaps, each
originator's versions in order, each state's AES-GCM tag (which binds the state to its row),
and the Merkle root at every checkpoint. It names the first bad record and why.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from eventsourcing.persistence import Notification

from ledger.errors import CheckpointError, StoreError
from ledger.persistence.codec import RowCipher, unpack_payload
from ledger.persistence.store import SealHook
from ledger.seal.checkpoint import Checkpoint, note_with_signature, open_checkpoint, sign_checkpoint
from ledger.seal.merkle import Frontier, leaf_hash

CHECKPOINT_TOPIC_SUFFIX = "Licence.AuditCheckpointSigned"
FILE_INTERVAL = 0.5  # seconds between rewrites of the latest-checkpoint file
_Q = struct.Struct(">Q")


def leaf_bytes(record_id: int, originator_id: Any, version: int, topic: str,
               payload: bytes) -> bytes:
    """The bytes a record contributes to the tree.

    ``id (8, big-endian) || originator id (16) || version (8) || topic || 0x0A || payload``,
    where payload is the record's plaintext (the flagged, possibly compressed MessagePack
    that the at-rest cipher protects). Sealing the plaintext rather than the ciphertext lets
    a recipient of the export, who never holds the at-rest key, recompute every leaf.
    """
    oid = originator_id.bytes if hasattr(originator_id, "bytes") else str(originator_id).encode()
    return _Q.pack(record_id) + oid + _Q.pack(version) + topic.encode() + b"\n" + payload


def open_payload(cipher: RowCipher | None, n: Notification) -> bytes:
    """A stored record's plaintext payload. Raises InvalidTag if it fails authentication."""
    if cipher is None:
        return n.state
    return cipher.open(n.state, RowCipher.associated_data(n.originator_id, n.originator_version,
                                                           n.topic))


class Sealer(SealHook):
    """Extends the tree inside each insert transaction; see the module docstring."""

    def __init__(self, frontier: Frontier, signing_key: Ed25519PrivateKey, origin: str,
                 checkpoint_file: Path | None, *, cipher: RowCipher | None,
                 contiguous_ids: bool = True):
        self.cipher = cipher
        self._public_key = signing_key.public_key()
        self._note: str | None = None
        self._file_stale = False
        self._file_written = -FILE_INTERVAL
        # Plaintexts the mapper just encrypted, so sealing need not decrypt them again.
        self.recent_payloads: dict[tuple[Any, int], bytes] = {}
        self.frontier = frontier
        self.signing_key = signing_key
        self.origin = origin
        self.checkpoint_file = checkpoint_file
        self.contiguous_ids = contiguous_ids

    def seal_in_transaction(self, execute: Callable[..., Any],
                            rows: Sequence[tuple[int, Any, int, str, bytes]]) -> Any:
        f = self.frontier.copy()
        recent = self.recent_payloads
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
        recent.clear()
        root = f.root()
        body = Checkpoint(self.origin, f.size, root).body()
        signature = self.signing_key.sign(body.encode())
        execute(
            "INSERT INTO seal_checkpoints (tree_size, root, signature, signed_at) VALUES (?, ?, ?, ?)",
            (f.size, root, signature, time.time()),
        )
        execute(
            "INSERT INTO seal_state (id, frontier) VALUES (1, ?) "
            "ON CONFLICT (id) DO UPDATE SET frontier = excluded.frontier",
            (f.to_bytes(),),
        )
        return f, body, signature

    def committed(self, token: Any) -> None:
        self.frontier, body, signature = token
        self._note = note_with_signature(body, self.origin, self._public_key, signature)
        self._file_stale = True
        # The file outside the store is rewritten at most every FILE_INTERVAL seconds (and
        # at close): a rename per commit would cost more than the commit's own work. After
        # a crash it may lag the store by that much, which verification accepts (a file
        # behind the store is normal; a file ahead of it means records were removed).
        if time.monotonic() - self._file_written >= FILE_INTERVAL:
            self.flush()

    def flush(self) -> None:
        """Write the latest checkpoint to the file outside the store, if it changed."""
        if self.checkpoint_file is not None and self._file_stale and self._note is not None:
            write_atomic(self.checkpoint_file, self._note.encode())
            self._file_written = time.monotonic()
            self._file_stale = False

    def signed_note(self) -> str:
        """The latest checkpoint as a C2SP signed note."""
        if self._note is None:
            cp = Checkpoint(self.origin, self.frontier.size, self.frontier.root())
            self._note = sign_checkpoint(cp, self.origin, self.signing_key)
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


Row = tuple[int, Any, int, str, bytes]  # id, originator id, version, topic, stored state


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
) -> VerifyReport:
    """Check every record against the seal. Never raises for a bad store: it reports."""
    by_size: dict[int, list[tuple[bytes, bytes]]] = {}
    for size, root, sig, _ in seal_rows:
        by_size.setdefault(size, []).append((root, sig))
    roots: dict[int, bytes] = {0: Frontier().root()}
    frontier = Frontier()
    last_version: dict[Any, int] = {}
    last_good = 0
    checkpoints = notes = 0
    expected = 1
    count = 0
    # The hot loop: locals only, per-originator and per-topic bytes computed once. The leaf
    # is leaf_bytes() inlined, hashed as merkle.leaf_hash() does.
    oid_bytes: dict[Any, bytes] = {}
    topic_bytes: dict[str, bytes] = {}
    pack = _Q.pack
    sha256 = hashlib.sha256
    append = frontier.append
    decrypt = cipher._aead.decrypt if cipher is not None else None
    nonce = RowCipher.NONCE
    try:
        for record_id, originator_id, version, topic, stored in rows:
            count += 1
            if contiguous_ids and record_id != expected:
                if record_id > expected:
                    raise _Found(expected, f"missing (the next stored record is {record_id})")
                raise _Found(record_id, f"out of order: follows record {expected - 1}")
            prev = last_version.get(originator_id, 0)
            if version != prev + 1:
                raise _Found(record_id, f"version {version} of {originator_id} "
                                        f"follows version {prev}: reordered, removed or re-used")
            last_version[originator_id] = version
            ob = oid_bytes.get(originator_id)
            if ob is None:
                ob = oid_bytes[originator_id] = (
                    originator_id.bytes if hasattr(originator_id, "bytes")
                    else str(originator_id).encode())
            tb = topic_bytes.get(topic)
            if tb is None:
                tb = topic_bytes[topic] = topic.encode()
            packed_version = pack(version)
            if decrypt is not None:
                try:
                    state = decrypt(stored[:nonce], stored[nonce:], ob + packed_version + tb)
                except (InvalidTag, ValueError):
                    raise _Found(record_id, "state fails authentication: altered, or moved from "
                                            "another record") from None
            else:
                state = stored
            if topic.endswith(CHECKPOINT_TOPIC_SUFFIX):
                notes += 1
                _check_note(record_id, decode_state(unpack_payload(state)), roots,
                            note_key or public_key, origin)
            append(sha256(b"\x00" + pack(record_id) + ob + packed_version + tb + b"\n"
                          + state).digest())
            expected = record_id + 1
            size = frontier.size
            seals = by_size.get(size)
            if seals:
                root = frontier.root()
                roots[size] = root
                for sealed_root, sig in seals:
                    checkpoints += 1
                    body = Checkpoint(origin, size, sealed_root).body().encode()
                    try:
                        public_key.verify(sig, body)
                    except InvalidSignature:
                        raise _Found(record_id, f"the checkpoint for {size} records has a bad "
                                           "signature") from None
                    if sealed_root != root:
                        first = last_good + 1
                        where = f"record {first}" if first == size else f"records {first}-{size}"
                        raise _Found(first, f"does not match the checkpoint signed for {size} "
                                            f"records ({where} altered, replaced or re-used)")
                last_good = size
            if progress is not None and count % 10000 == 0:
                progress(count)
        size = frontier.size
        if seal_rows:
            top = max(r[0] for r in seal_rows)
            if top > size:
                raise _Found(size + 1, f"missing: the seal covers {top} records but the store "
                                       f"ends at {size} (truncated)")
        if size > last_good:
            raise _Found(last_good + 1, "not covered by any checkpoint: written outside the ledger")
        if frontier_state is not None:
            try:
                state_frontier = Frontier.from_bytes(frontier_state)
            except ValueError as e:
                raise _Found(size + 1, f"the seal state is damaged: {e}") from None
            if state_frontier.size != size or state_frontier.root() != frontier.root():
                raise _Found(min(state_frontier.size, size) + 1,
                             f"the seal state covers {state_frontier.size} records, "
                             f"the store holds {size}")
        if checkpoint_note is not None:
            try:
                cp = open_checkpoint(checkpoint_note, origin, public_key)
            except CheckpointError as e:
                raise _Found(size + 1, f"latest checkpoint file: {e}") from None
            if cp.size > size:
                raise _Found(size + 1, f"missing: the latest checkpoint covers {cp.size} records "
                                       f"but the store ends at {size} (truncated)")
            if roots.get(cp.size) not in (None, cp.root) or (
                    cp.size == size and cp.root != frontier.root()):
                raise _Found(cp.size, "does not match the latest checkpoint file")
    except _Found as found:
        return VerifyReport(count, checkpoints, notes, frontier.root(), found.problem)
    return VerifyReport(count, checkpoints, notes, frontier.root(), None)


def _check_note(record: int, state: dict[str, Any], roots: dict[int, bytes],
                public_key: Ed25519PublicKey, origin: str) -> None:
    try:
        cp = open_checkpoint(state["note"], origin, public_key)
    except (CheckpointError, KeyError) as e:
        raise _Found(record, f"recorded checkpoint does not verify: {e}") from None
    if roots.get(cp.size) not in (None, cp.root):
        raise _Found(record, f"recorded checkpoint for {cp.size} records disagrees with the log")
