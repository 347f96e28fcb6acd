"""The master's local copy of built exports (``<data dir>/exports/``).

An export is built once and kept here until it is delivered and recorded, so that a delivery
interrupted at any point is finished later with the *same* bytes (age encryption is
randomised: building a day twice gives different files, which a sink would rightly refuse
as a conflict). A day counts as built once its manifest is here: it is written last. After
the export is recorded, the records file and its signature are removed; the manifest and its
signature stay, because the next day's export starts where that manifest left the tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from .build import BuiltExport
from .errors import BuildError
from .manifest import Manifest, decode_manifest
from .naming import ExportNames

__all__ = ["Outbox"]


class Outbox:
    """Built exports in ``folder`` (created on first use, mode 0700)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def save(self, built: BuiltExport) -> None:
        """Store every file of ``built``, the manifest last. Raises OSError."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for name, data in built.files:
            _write_atomic(self.folder / name, data)

    def save_manifest(self, names: ExportNames, manifest: bytes, signature: bytes) -> None:
        """Store a manifest (and its signature) fetched back from the sink. Raises OSError."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_atomic(self.folder / names.manifest_signature, signature)
        _write_atomic(self.folder / names.manifest, manifest)

    def manifest(self, names: ExportNames) -> tuple[Manifest, bytes] | None:
        """The stored manifest of that day, or ``None`` if the day was never built here.

        Raises:
            BuildError: the stored manifest is unreadable.
        """
        path = self.folder / names.manifest
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise BuildError(f"cannot read {path}: {err.strerror}") from err
        try:
            return decode_manifest(data), data
        except ValueError as err:
            raise BuildError(f"{path}: {err}") from None

    def files(self, names: ExportNames) -> tuple[tuple[str, bytes], ...] | None:
        """Every file of that day in upload order, or ``None`` if any is missing."""
        found = []
        for name in names.upload_order:
            try:
                found.append((name, (self.folder / name).read_bytes()))
            except FileNotFoundError:
                return None
        return tuple(found)

    def prune(self, names: ExportNames) -> None:
        """Drop the records file and its signature of a day whose export is recorded."""
        for name in (names.data, names.data_signature):
            try:
                (self.folder / name).unlink()
            except FileNotFoundError:
                pass


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(fd)
    os.replace(temporary, path)
