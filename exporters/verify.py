"""The recipient's check of a run of daily exports (docs/export-format.md, "Verifying").

Per day, in this order (the first failure is reported, as ``DAY: reason``):

1. the manifest's minisign signature, by the master's export key, for this file and day;
2. the manifest: its day and file names, record range and counts, the checkpoint note (signed
   by the log's key, the same key every day), the start frontier (it must hash to the
   previous checkpoint's root) and the consistency proof from the previous checkpoint;
3. the link to the day before: the previous export named by the manifest must be the day
   before, and when that day is among the files given, the very manifest given (SHA-256),
   with the same checkpoint;
4. the records file: its size, SHA-256 and minisign signature;
5. with the vendor's age identity: decrypted, decompressed, every record in id order, on
   that day, decoding to what its line says, recorded checkpoints verifying, and the
   records' leaves appended to the start frontier giving exactly the signed root.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ledger.application import ImportedRecord
from ledger.errors import CheckpointError
from ledger.seal.checkpoint import open_checkpoint
from ledger.seal.merkle import Frontier, verify_consistency

from .chain import RecordFault, extend_tree, parse_verifier_key
from .envelope import decrypt_export, export_comment, verify_signature
from .errors import EnvelopeError, VerifyError
from .manifest import Manifest, decode_manifest
from .naming import DATA_SUFFIX, MANIFEST_SUFFIX, SIGNATURE_SUFFIX, ExportNames, parse_name
from .proofs import frontier_from_hashes
from .records import RecordLine, decode_lines

__all__ = ["DayFiles", "VerifiedDay", "Verifier", "VerifyReport", "locate"]


@attrs.frozen
class DayFiles:
    """Where one day's four files are (they need not exist: verifying says what is missing)."""

    folder: Path
    stem: str
    day: date

    def path(self, suffix: str) -> Path:
        return self.folder / (self.stem + suffix)

    @property
    def manifest(self) -> Path:
        return self.path(MANIFEST_SUFFIX)

    @property
    def manifest_signature(self) -> Path:
        return self.path(MANIFEST_SUFFIX + SIGNATURE_SUFFIX)

    @property
    def data(self) -> Path:
        return self.path(DATA_SUFFIX)

    @property
    def data_signature(self) -> Path:
        return self.path(DATA_SUFFIX + SIGNATURE_SUFFIX)


def locate(paths: Iterable[Path]) -> list[DayFiles]:
    """The days named by ``paths`` (any of a day's files, or folders holding exports), oldest
    first.

    Raises:
        VerifyError: a path is missing or not an export file, or a day is given twice.
    """
    found: dict[date, DayFiles] = {}

    def add(path: Path) -> None:
        parsed = parse_name(path.name)
        if parsed is None:
            raise VerifyError(f"{path}: not an export file (seatledger-ORIGIN-DAY"
                              f"{MANIFEST_SUFFIX} or {DATA_SUFFIX}, or their {SIGNATURE_SUFFIX})")
        _, day, kind = parsed
        files = DayFiles(path.parent, path.name[: -len(kind)], day)
        other = found.setdefault(day, files)
        if other != files:
            raise VerifyError(f"two exports of {day} given: {other.manifest} and {files.manifest}")

    for path in paths:
        path = Path(path)
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if parse_name(child.name) is not None:
                    add(child)
        elif path.exists():
            add(path)
        else:
            raise VerifyError(f"{path}: no such file or folder")
    return [found[day] for day in sorted(found)]


@attrs.frozen
class VerifiedDay:
    """A day that passed verification."""

    files: DayFiles
    manifest: Manifest
    manifest_sha256: str


@attrs.frozen
class VerifyReport:
    """A run of consecutive days that passed verification."""

    origin: str
    days: tuple[VerifiedDay, ...]
    records_checked: bool

    @property
    def records(self) -> int:
        return sum(d.manifest.records.count for d in self.days)

    @property
    def from_first_export(self) -> bool:
        """Whether the run starts with the origin's first export (from the empty tree)."""
        return self.days[0].manifest.previous.day is None

    def as_dict(self) -> dict[str, object]:
        last = self.days[-1].manifest
        return {
            "origin": self.origin,
            "first_day": self.days[0].manifest.day.isoformat(),
            "last_day": last.day.isoformat(),
            "days": len(self.days),
            "records": self.records,
            "tree_size": last.checkpoint.size,
            "root": last.checkpoint.root.hex(),
            "from_first_export": self.from_first_export,
            "records_checked": self.records_checked,
        }


_LINE_INDEX = re.compile(r"\$\[(\d+)\]")


class Verifier:
    """Checks exports signed by the master key ``public_key_text`` (a minisign ``.pub``).

    Without ``identity_text`` (the vendor's age identity file) the records files are checked
    by hash and signature only, not opened. ``checkpoint_key`` pins the log's verifier key;
    without it, the key the first manifest names is required of every later one.
    ``progress(records)`` is called as records are checked.
    """

    def __init__(
        self,
        public_key_text: str,
        *,
        identity_text: str | None = None,
        checkpoint_key: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.public_key_text = public_key_text
        self.identity_text = identity_text
        self.checkpoint_key = checkpoint_key
        self.progress = progress
        self._checked = 0

    def verify(self, paths: Iterable[Path]) -> VerifyReport:
        """Verify every day the paths name, and that they form one unbroken chain.

        Raises:
            VerifyError: the first problem, as one line.
        """
        days = locate(paths)
        if not days:
            raise VerifyError("no export files given")
        verified: list[VerifiedDay] = []
        key: tuple[str, Ed25519PublicKey] | None = None
        if self.checkpoint_key is not None:
            key = self._parse_key(self.checkpoint_key, "the pinned checkpoint key")
        for files in days:
            manifest, manifest_bytes = self._manifest(files)
            if verified and manifest.origin != verified[0].manifest.origin:
                raise VerifyError(f"{files.day}: origin {manifest.origin!r} differs from "
                                  f"{verified[0].manifest.origin!r}")
            key = self._checkpoint(files.day, manifest, key)
            self._link(files.day, manifest, verified[-1] if verified else None)
            self._check_data(files, manifest)
            if self.identity_text is not None:
                self._check_records(files, manifest, key)
            verified.append(VerifiedDay(files, manifest,
                                        hashlib.sha256(manifest_bytes).hexdigest()))
        return VerifyReport(verified[0].manifest.origin, tuple(verified),
                            self.identity_text is not None)

    def records(self, day: VerifiedDay) -> Iterator[ImportedRecord]:
        """The records of a verified day, read again, for import.

        Raises:
            VerifyError: the file changed since it was verified, or no identity was given.
        """
        lines = self._lines(day.files, day.manifest)
        for line in lines:
            yield ImportedRecord(line.id, line.originator_id, line.version, line.topic,
                                 line.payload)

    # ------------------------------------------------------------------ steps
    def _manifest(self, files: DayFiles) -> tuple[Manifest, bytes]:
        day = files.day
        data = _read(files.manifest, day)
        signature = _read(files.manifest_signature, day)
        try:
            verify_signature(data, signature, self.public_key_text,
                             expected_comment=export_comment(files.manifest.name, day))
        except EnvelopeError as err:
            raise VerifyError(f"{day}: {files.manifest.name}: {err}") from None
        try:
            manifest = decode_manifest(data)
        except ValueError as err:
            raise VerifyError(f"{day}: {files.manifest.name}: {err}") from None
        names = ExportNames(manifest.origin, manifest.day)
        if manifest.day != day or names.manifest != files.manifest.name:
            raise VerifyError(f"{day}: {files.manifest.name} holds the manifest of "
                              f"{names.manifest}")
        if (manifest.data.file, manifest.data.signature) != (names.data, names.data_signature):
            raise VerifyError(f"{day}: the manifest names other files ({manifest.data.file})")
        records = manifest.records
        if (records.count != records.last_id - records.first_id + 1 or records.count < 0
                or sum(records.by_type.values()) != records.count):
            raise VerifyError(f"{day}: the manifest's record counts do not add up")
        if records.first_id != manifest.previous.size + 1:
            raise VerifyError(f"{day}: the records start at {records.first_id}, but the "
                              f"previous export ended at {manifest.previous.size}")
        if manifest.checkpoint.size != records.last_id:
            raise VerifyError(f"{day}: the checkpoint covers {manifest.checkpoint.size} records, "
                              f"the day ends at record {records.last_id}")
        return manifest, data

    def _parse_key(self, vkey: str, what: str) -> tuple[str, Ed25519PublicKey]:
        try:
            return parse_verifier_key(vkey)
        except ValueError as err:
            raise VerifyError(f"{what}: {err}") from None

    def _checkpoint(self, day: date, manifest: Manifest,
                    key: tuple[str, Ed25519PublicKey] | None) -> tuple[str, Ed25519PublicKey]:
        named = self._parse_key(manifest.checkpoint.key, f"{day}: checkpoint key")
        if named[0] != manifest.origin:
            raise VerifyError(f"{day}: the checkpoint key is named {named[0]!r}, not after the "
                              f"origin {manifest.origin!r}")
        if key is not None and named[1].public_bytes_raw() != key[1].public_bytes_raw():
            raise VerifyError(f"{day}: the checkpoint key differs from the one expected "
                              f"({manifest.checkpoint.key[:40]}...)")
        checkpoint = manifest.checkpoint
        try:
            signed = open_checkpoint(checkpoint.note, manifest.origin, named[1])
        except CheckpointError as err:
            raise VerifyError(f"{day}: the checkpoint does not verify ({err})") from None
        if (signed.size, signed.root) != (checkpoint.size, checkpoint.root):
            raise VerifyError(f"{day}: the signed checkpoint differs from the manifest's")
        previous = manifest.previous
        try:
            start = frontier_from_hashes(previous.size, manifest.start_frontier)
        except ValueError:
            raise VerifyError(f"{day}: the start frontier is malformed") from None
        if start.root() != previous.root:
            raise VerifyError(f"{day}: the start frontier does not give the previous root")
        if not verify_consistency(previous.size, checkpoint.size, previous.root, checkpoint.root,
                                  manifest.consistency_proof):
            raise VerifyError(
                f"{day}: the consistency proof from {previous.size} to {checkpoint.size} records "
                "does not verify: the history before this day was rewritten"
            )
        return named

    def _link(self, day: date, manifest: Manifest, before: VerifiedDay | None) -> None:
        previous = manifest.previous
        if previous.day is None:
            if previous.size != 0 or previous.manifest is not None:
                raise VerifyError(f"{day}: names no previous export but starts at "
                                  f"{previous.size} records")
            if before is not None:
                raise VerifyError(f"{day}: claims to be the first export, but follows "
                                  f"{before.manifest.day}")
            return
        if previous.day != day - timedelta(days=1):
            raise VerifyError(f"{day}: follows the export of {previous.day}, not of the day "
                              "before: the chain skips days")
        if before is None:
            return
        if before.manifest.day != previous.day:
            raise VerifyError(f"{day}: the export of {previous.day} is missing (the chain goes "
                              f"{before.manifest.day} -> {previous.day} -> {day})")
        if previous.manifest_sha256 != before.manifest_sha256:
            raise VerifyError(f"{day}: follows another manifest of {previous.day} than the one "
                              "given (SHA-256 differs)")
        link = (before.manifest.checkpoint.size, before.manifest.checkpoint.root)
        if (previous.size, previous.root) != link:
            raise VerifyError(f"{day}: the previous checkpoint differs from {previous.day}'s")

    def _check_data(self, files: DayFiles, manifest: Manifest) -> bytes:
        day = files.day
        data = _read(files.data, day)
        if len(data) != manifest.data.size or (
                hashlib.sha256(data).hexdigest() != manifest.data.sha256):
            raise VerifyError(f"{day}: {files.data.name} is not the file the manifest names "
                              f"({len(data)} bytes, SHA-256 differs)")
        signature = _read(files.data_signature, day)
        try:
            verify_signature(data, signature, self.public_key_text,
                             expected_comment=export_comment(files.data.name, day))
        except EnvelopeError as err:
            raise VerifyError(f"{day}: {files.data.name}: {err}") from None
        return data

    def _lines(self, files: DayFiles, manifest: Manifest) -> list[RecordLine]:
        day = files.day
        if self.identity_text is None:
            raise VerifyError("an age identity is needed to read the records")
        ciphertext = self._check_data(files, manifest)
        try:
            compressed = decrypt_export(ciphertext, self.identity_text)
        except EnvelopeError as err:
            raise VerifyError(f"{day}: {files.data.name}: {err}") from None
        try:
            jsonl = gzip.decompress(compressed)
        except (OSError, EOFError, zlib.error) as err:
            raise VerifyError(f"{day}: {files.data.name}: not gzip, or damaged ({err})") from None
        if (len(jsonl) != manifest.data.jsonl_size
                or hashlib.sha256(jsonl).hexdigest() != manifest.data.jsonl_sha256):
            raise VerifyError(f"{day}: the decrypted records differ from the manifest's hash")
        try:
            return decode_lines(jsonl)
        except ValueError as err:
            message = _LINE_INDEX.sub(lambda m: f"line {int(m.group(1)) + 1}", str(err))
            raise VerifyError(f"{day}: {message}") from None

    def _check_records(self, files: DayFiles, manifest: Manifest,
                       key: tuple[str, Ed25519PublicKey]) -> None:
        day = files.day
        lines = self._lines(files, manifest)
        frontier: Frontier = frontier_from_hashes(manifest.previous.size, manifest.start_frontier)
        try:
            count = extend_tree(frontier, lines, first_id=manifest.records.first_id, day=day,
                                origin=manifest.origin, key=key[1])
        except RecordFault as err:
            raise VerifyError(f"{day}: {err}") from None
        if count != manifest.records.count:
            raise VerifyError(f"{day}: the file holds {count} records, the manifest says "
                              f"{manifest.records.count}")
        if frontier.root() != manifest.checkpoint.root:
            raise VerifyError(f"{day}: the records do not give the signed root: altered, "
                              "removed, added or reordered")
        self._checked += count
        if self.progress is not None:
            self.progress(self._checked)


def _read(path: Path, day: date) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise VerifyError(f"{day}: {path.name} is missing") from None
    except OSError as err:
        raise VerifyError(f"{day}: cannot read {path}: {err.strerror}") from err
