"""The names of one day's export files, and reading a day back from a file name.

One UTC day of origin ``acme`` is four files, uploaded in this order (the manifest last, so a
manifest on the server means its day is complete)::

    seatledger-acme-2026-03-02.jsonl.gz.age            the records, gzip, age-encrypted
    seatledger-acme-2026-03-02.jsonl.gz.age.minisig    minisign signature of that file
    seatledger-acme-2026-03-02.manifest.json.minisig   minisign signature of the manifest
    seatledger-acme-2026-03-02.manifest.json           the manifest (plain JSON)
"""

from __future__ import annotations

import datetime
import re

import attrs

__all__ = ["DATA_SUFFIX", "MANIFEST_SUFFIX", "SIGNATURE_SUFFIX", "ExportNames", "parse_name"]

DATA_SUFFIX = ".jsonl.gz.age"
MANIFEST_SUFFIX = ".manifest.json"
SIGNATURE_SUFFIX = ".minisig"

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")
_NAME = re.compile(
    r"seatledger-(?P<origin>[A-Za-z0-9_.+-]+)-(?P<day>\d{4}-\d{2}-\d{2})"
    r"(?P<kind>\.jsonl\.gz\.age(?:\.minisig)?|\.manifest\.json(?:\.minisig)?)"
)


def safe_origin(origin: str) -> str:
    """``origin`` with every character a sink refuses in a file name replaced by ``_``."""
    return _UNSAFE.sub("_", origin)


@attrs.frozen
class ExportNames:
    """The file names of one origin's export for one day."""

    origin: str
    day: datetime.date

    @property
    def stem(self) -> str:
        return f"seatledger-{safe_origin(self.origin)}-{self.day.isoformat()}"

    @property
    def data(self) -> str:
        return self.stem + DATA_SUFFIX

    @property
    def data_signature(self) -> str:
        return self.data + SIGNATURE_SUFFIX

    @property
    def manifest(self) -> str:
        return self.stem + MANIFEST_SUFFIX

    @property
    def manifest_signature(self) -> str:
        return self.manifest + SIGNATURE_SUFFIX

    @property
    def upload_order(self) -> tuple[str, str, str, str]:
        """Every file, in the order they are uploaded: the manifest last."""
        return (self.data, self.data_signature, self.manifest_signature, self.manifest)


def parse_name(name: str) -> tuple[str, datetime.date, str] | None:
    """``(safe origin, day, suffix)`` for an export file name, or ``None`` for another name."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    try:
        day = datetime.date.fromisoformat(match["day"])
    except ValueError:
        return None
    return match["origin"], day, match["kind"]
