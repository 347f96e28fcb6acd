"""Building one UTC day's export from the ledger: records, checkpoint, proof, envelope.

A record belongs to the UTC day of its record time. Record time never runs backwards, so a
day is a contiguous run of ids, starting right after the previous export's last record; a day
with no records still gets an export (with none), so the chain has no holes.
"""

from __future__ import annotations

import gzip
import hashlib
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta

import attrs

from ledger import LedgerApp, LedgerError
from ledger.seal.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from ledger.seal.merkle import Frontier

from .chain import ChainState, RecordFault, check_recorded_checkpoint
from .envelope import SigningKey, export_comment, seal_export
from .errors import BuildError
from .manifest import FORMAT, CheckpointInfo, DataFile, Manifest, RecordRange, encode_manifest
from .naming import ExportNames
from .proofs import consistency_proof_from, frontier_hashes
from .records import (
    CHECKPOINT_TOPIC_SUFFIX,
    RecordLine,
    decode_record,
    encode_lines,
    record_leaf,
    record_line,
)

__all__ = ["BuiltExport", "build_day", "chain_after", "day_lines"]

GZIP_LEVEL = 6
Progress = Callable[[int], None]


@attrs.frozen
class BuiltExport:
    """One day's export, ready to upload."""

    manifest: Manifest
    manifest_bytes: bytes
    names: ExportNames
    files: tuple[tuple[str, bytes], ...]  # upload order: the manifest last
    after: ChainState

    @property
    def day(self) -> date:
        return self.manifest.day


def day_lines(app: LedgerApp, day: date, first_id: int,
              progress: Progress | None = None) -> list[RecordLine]:
    """The export lines of ``day``'s records, which start at ``first_id``.

    Raises:
        BuildError: a record from ``first_id`` on belongs to an earlier day (that day's export
            is missing or was cut short), or a record cannot be read.
    """
    lines: list[RecordLine] = []
    try:
        for notification, payload in app.records(first_id):
            try:
                decoded = decode_record(notification.originator_id,
                                        notification.originator_version, notification.topic,
                                        payload)
            except ValueError as err:
                raise BuildError(f"record {notification.id}: {err}") from None
            if decoded.day > day:
                break
            if decoded.day < day:
                raise BuildError(
                    f"record {notification.id} was recorded on {decoded.day}, before {day}, but "
                    "is not in an earlier export"
                )
            lines.append(record_line(notification, payload, decoded))
            if progress is not None and len(lines) % 5000 == 0:
                progress(len(lines))
    except LedgerError as err:
        raise BuildError(f"cannot read the ledger: {err}") from err
    if progress is not None:
        progress(len(lines))
    return lines


def build_day(
    app: LedgerApp,
    day: date,
    previous: ChainState,
    *,
    recipients: list[str],
    signing_key: SigningKey,
    progress: Progress | None = None,
) -> BuiltExport:
    """Build ``day``'s export, following the export that left the tree at ``previous``.

    Raises:
        BuildError: the day is not over, does not follow ``previous``, or its records do not
            extend the tree as the ledger sealed it.
        KeyMaterialError: a recipient is not an age public key.
    """
    now = app.now()
    if day >= now.date():
        raise BuildError(f"{day} is not over yet (the ledger's time is {now:%Y-%m-%d %H:%M}Z)")
    if previous.day is not None and previous.day != day - timedelta(days=1):
        raise BuildError(f"cannot export {day}: the last export is of {previous.day}")
    first_id = previous.size + 1
    lines = day_lines(app, day, first_id, progress)
    frontier = previous.frontier()
    start = frontier.copy()
    leaves = []
    for line in lines:
        if line.topic.endswith(CHECKPOINT_TOPIC_SUFFIX):
            try:
                check_recorded_checkpoint(line.id, line.fields.get("note"), frontier,
                                          app.origin, app.public_key)
            except RecordFault as err:
                raise BuildError(f"the ledger disagrees with its own seal: {err}") from None
        leaf = record_leaf(line)
        leaves.append(leaf)
        frontier.append(leaf)
    size, root = frontier.size, frontier.root()
    sealed_now = app.sealer.frontier
    if sealed_now.size == size and sealed_now.root() != root:
        raise BuildError(f"the records of {day} do not give the ledger's sealed root: "
                         "run 'seatledger audit verify'")
    note = sign_checkpoint(Checkpoint(app.origin, size, root), app.origin, app.signing_key)

    names = ExportNames(app.origin, day)
    jsonl = encode_lines(lines)
    sealed = seal_export(gzip.compress(jsonl, GZIP_LEVEL, mtime=0), recipients, signing_key,
                         file_name=names.data, day=day)
    manifest = Manifest(
        format=FORMAT,
        origin=app.origin,
        day=day,
        created_at=now,
        records=RecordRange(first_id=first_id, last_id=size, count=len(lines),
                            by_type=dict(sorted(Counter(line.type for line in lines).items()))),
        data=DataFile(file=names.data, size=len(sealed.ciphertext),
                      sha256=hashlib.sha256(sealed.ciphertext).hexdigest(),
                      signature=names.data_signature, jsonl_size=len(jsonl),
                      jsonl_sha256=hashlib.sha256(jsonl).hexdigest()),
        checkpoint=CheckpointInfo(size=size, root=root, note=note,
                                  key=verifier_key(app.origin, app.public_key)),
        previous=previous.as_previous(),
        start_frontier=frontier_hashes(start),
        consistency_proof=consistency_proof_from(start, leaves),
    )
    manifest_bytes = encode_manifest(manifest)
    manifest_signature = signing_key.sign(manifest_bytes, export_comment(names.manifest, day))
    files = {
        names.data: sealed.ciphertext,
        names.data_signature: sealed.signature,
        names.manifest_signature: manifest_signature,
        names.manifest: manifest_bytes,
    }
    after = ChainState.after(manifest, names.manifest,
                             hashlib.sha256(manifest_bytes).hexdigest(), frontier)
    return BuiltExport(manifest, manifest_bytes, names,
                       tuple((name, files[name]) for name in names.upload_order), after)


def chain_after(app: LedgerApp, manifest: Manifest, manifest_name: str,
                manifest_bytes: bytes) -> ChainState:
    """Where ``manifest``'s day left the tree, re-derived from the ledger's records.

    Raises:
        BuildError: the ledger's records for that day no longer give the root it exported.
    """
    try:
        frontier = Frontier.from_bytes(manifest.previous.size.to_bytes(8, "big")
                                       + b"".join(manifest.start_frontier))
    except ValueError as err:
        raise BuildError(f"{manifest_name}: bad start frontier ({err})") from None
    lines = day_lines(app, manifest.day, manifest.records.first_id)
    for line in lines:
        frontier.append(record_leaf(line))
    if frontier.size != manifest.checkpoint.size or frontier.root() != manifest.checkpoint.root:
        raise BuildError(
            f"the ledger's records of {manifest.day} no longer give the tree that was exported "
            f"({manifest.checkpoint.size} records): run 'seatledger audit verify'"
        )
    return ChainState.after(manifest, manifest_name, hashlib.sha256(manifest_bytes).hexdigest(),
                            frontier)
