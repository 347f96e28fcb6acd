"""The manifest: what one day's export holds, the checkpoint that seals it, and its link to
the previous day's export. Plain JSON, signed with minisign (docs/export-format.md).

The classes below are the document's schema: decoding checks every field's type.
"""

from __future__ import annotations

from datetime import date, datetime

import msgspec

__all__ = [
    "FORMAT",
    "CheckpointInfo",
    "DataFile",
    "Manifest",
    "PreviousExport",
    "RecordRange",
    "decode_manifest",
    "encode_manifest",
]

FORMAT = "seatledger-audit-export/1"


class RecordRange(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The day's records: ids ``first_id..last_id`` (``count`` of them; none when
    ``last_id == first_id - 1``) and how many of each event type."""

    first_id: int
    last_id: int
    count: int
    by_type: dict[str, int]


class DataFile(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The encrypted records file, its signature file, and the JSON lines inside."""

    file: str
    size: int
    sha256: str
    signature: str
    jsonl_size: int
    jsonl_sha256: str


class CheckpointInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The tree head after the day's last record: C2SP checkpoint ``note`` signed by ``key``
    (a signed-note verifier key string)."""

    size: int
    root: bytes
    note: str
    key: str


class PreviousExport(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The export this one follows (``day`` null and ``size`` 0 for the first export)."""

    day: date | None
    manifest: str | None
    manifest_sha256: str | None
    size: int
    root: bytes


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One day's manifest."""

    format: str
    origin: str
    day: date
    created_at: datetime
    records: RecordRange
    data: DataFile
    checkpoint: CheckpointInfo
    previous: PreviousExport
    start_frontier: list[bytes]
    consistency_proof: list[bytes]


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Manifest)


def encode_manifest(manifest: Manifest) -> bytes:
    """The manifest file's bytes: indented JSON and a final newline."""
    return msgspec.json.format(_ENCODER.encode(manifest), indent=2) + b"\n"


def decode_manifest(data: bytes) -> Manifest:
    """Parse a manifest file.

    Raises:
        ValueError: not JSON, a field missing or of the wrong type, or another format.
    """
    try:
        manifest = _DECODER.decode(data)
    except msgspec.DecodeError as err:
        raise ValueError(f"malformed manifest ({err})") from None
    if manifest.format != FORMAT:
        raise ValueError(f"unsupported manifest format {manifest.format!r}")
    return manifest
