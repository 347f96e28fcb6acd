"""The chain of exports: where one day's export leaves the ledger's Merkle tree, and the
checks a day's records must pass to extend it. Shared by the builder and the verifier.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import date

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.errors import CheckpointError
from ledger.seal.checkpoint import open_checkpoint, verifier_key
from ledger.seal.merkle import EMPTY_ROOT, Frontier

from .manifest import Manifest, PreviousExport
from .proofs import frontier_from_hashes, frontier_hashes
from .records import (
    CHECKPOINT_TOPIC_SUFFIX,
    RecordLine,
    decode_record,
    event_type,
    fields_as_read,
    record_leaf,
)

__all__ = [
    "ChainState",
    "RecordFault",
    "check_recorded_checkpoint",
    "extend_tree",
    "parse_verifier_key",
]


class RecordFault(ValueError):
    """A record that does not belong where it is; the message starts with ``record N:``."""


@attrs.frozen
class ChainState:
    """The tree as an export left it: the next export starts from here."""

    day: date | None
    size: int
    root: bytes
    frontier_hashes: tuple[bytes, ...]
    manifest: str | None = None
    manifest_sha256: str | None = None

    @classmethod
    def genesis(cls) -> ChainState:
        """Before the first export: the empty tree."""
        return cls(None, 0, EMPTY_ROOT, ())

    @classmethod
    def after(cls, manifest: Manifest, manifest_name: str, manifest_sha256: str,
              frontier: Frontier) -> ChainState:
        """The state after ``manifest``'s day, whose records brought the tree to ``frontier``."""
        return cls(manifest.day, frontier.size, frontier.root(), tuple(frontier_hashes(frontier)),
                   manifest_name, manifest_sha256)

    def frontier(self) -> Frontier:
        return frontier_from_hashes(self.size, self.frontier_hashes)

    def as_previous(self) -> PreviousExport:
        return PreviousExport(day=self.day, manifest=self.manifest,
                              manifest_sha256=self.manifest_sha256, size=self.size, root=self.root)


def parse_verifier_key(vkey: str) -> tuple[str, Ed25519PublicKey]:
    """The key name and Ed25519 public key of a signed-note verifier key string.

    Raises:
        ValueError: not a well-formed Ed25519 verifier key (its key id must match).
    """
    try:
        name, _key_id, encoded = vkey.split("+", 2)  # base64 may hold "+"; names never do
        raw = base64.b64decode(encoded, validate=True)
        if len(raw) != 33 or raw[0] != 1:
            raise ValueError
        public_key = Ed25519PublicKey.from_public_bytes(raw[1:])
        if verifier_key(name, public_key) != vkey:
            raise ValueError
    except ValueError:
        raise ValueError(f"not an Ed25519 signed-note verifier key: {vkey[:80]!r}") from None
    return name, public_key


def check_recorded_checkpoint(record_id: int, note: object, before: Frontier, origin: str,
                              key: Ed25519PublicKey) -> None:
    """A recorded AuditCheckpointSigned must be signed by the log's key and name the tree as
    it stood just before it.

    Raises:
        RecordFault: it does not verify or names another tree.
    """
    if not isinstance(note, str):
        raise RecordFault(f"record {record_id}: recorded checkpoint has no signed note")
    try:
        checkpoint = open_checkpoint(note, origin, key)
    except CheckpointError as err:
        raise RecordFault(f"record {record_id}: recorded checkpoint does not verify ({err})"
                          ) from None
    if checkpoint.size != before.size or checkpoint.root != before.root():
        raise RecordFault(
            f"record {record_id}: recorded checkpoint for {checkpoint.size} records disagrees "
            f"with the tree of the {before.size} records before it"
        )


def extend_tree(frontier: Frontier, lines: Iterable[RecordLine], *, first_id: int, day: date,
                origin: str, key: Ed25519PublicKey) -> int:
    """Append every record's leaf to ``frontier`` (in place), checking each record on the way.

    Each record must have the next id, decode, carry the record time and type its payload
    says, fall on ``day`` (UTC), and, if it is a recorded checkpoint, verify against the tree
    before it. Returns the number of records.

    Raises:
        RecordFault: the first record that fails, and why.
    """
    expected = first_id
    for line in lines:
        if line.id != expected:
            if line.id > expected:
                gap = f"{expected}" if line.id == expected + 1 else f"{expected}-{line.id - 1}"
                raise RecordFault(f"record {gap}: missing (the next record in the file is "
                                  f"{line.id})")
            raise RecordFault(f"record {line.id}: out of order or repeated (expected {expected})")
        try:
            decoded = decode_record(line.originator_id, line.version, line.topic, line.payload)
        except ValueError as err:
            raise RecordFault(f"record {line.id}: {err}") from None
        if decoded.day != day:
            raise RecordFault(f"record {line.id}: recorded on {decoded.day}, not on {day}")
        if line.recorded_at != decoded.recorded_at:
            raise RecordFault(f"record {line.id}: recorded_at {line.recorded_at.isoformat()} "
                              "disagrees with its payload")
        if line.type != event_type(line.topic):
            raise RecordFault(f"record {line.id}: type {line.type!r} disagrees with its topic")
        if line.fields != fields_as_read(decoded.event):
            raise RecordFault(f"record {line.id}: fields disagree with its payload")
        if line.topic.endswith(CHECKPOINT_TOPIC_SUFFIX):
            check_recorded_checkpoint(line.id, getattr(decoded.event, "note", None), frontier,
                                      origin, key)
        frontier.append(record_leaf(line))
        expected += 1
    return expected - first_id
