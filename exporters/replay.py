"""The recipient's replay: verified exports appended, unchanged, to the recipient's ledger.

The records keep their ids, originators, versions, topics and payloads, so the recipient's
Merkle tree is the master's and its licence state is the master's as of the last day
imported. A ledger can be brought up to date day after day: exports it already holds are
skipped, and the rest must continue exactly where it ends (same size, same root).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date
from itertools import chain

import attrs

from ledger import LedgerApp, LedgerError
from ledger.application import ImportedRecord

from .errors import ReplayError
from .verify import Verifier, VerifyReport

__all__ = ["ImportSummary", "import_verified"]


@attrs.frozen
class ImportSummary:
    """What an import did."""

    imported: tuple[date, ...]
    skipped: tuple[date, ...]
    records: int
    tree_size: int
    root: bytes

    def as_dict(self) -> dict[str, object]:
        return {"imported_days": [d.isoformat() for d in self.imported],
                "skipped_days": [d.isoformat() for d in self.skipped],
                "records": self.records, "tree_size": self.tree_size, "root": self.root.hex()}


def import_verified(
    app: LedgerApp,
    verifier: Verifier,
    report: VerifyReport,
    progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Append the days of ``report`` that ``app`` does not hold yet.

    Raises:
        ReplayError: the ledger holds another history, or the exports do not reach back to
            where it ends, or appending failed.
        VerifyError: a file changed since it was verified.
    """
    if not report.records_checked:
        raise ReplayError("exports are imported only after their records were verified")
    size = app.max_id()
    root = app.sealer.frontier.root()
    pending = [d for d in report.days if d.manifest.checkpoint.size > size]
    skipped = tuple(d.manifest.day for d in report.days if d not in pending)
    if not pending:
        last = report.days[-1].manifest.checkpoint
        if last.size == size and last.root != root:
            raise ReplayError(f"the ledger's {size} records are not the history of these exports")
        return ImportSummary((), skipped, 0, size, root)
    start = pending[0].manifest.previous
    if start.size < size:
        span = pending[0].manifest.records
        raise ReplayError(f"the ledger's {size} records end inside the export of "
                          f"{pending[0].manifest.day} (records {span.first_id}.."
                          f"{span.last_id}): it is not the history of these exports")
    if start.size > size:
        where = ("from its first export" if size == 0
                 else f"from the one that follows record {size}")
        raise ReplayError(f"the ledger holds {size} records: give the exports {where} on "
                          f"(the earliest given, {pending[0].manifest.day}, follows record "
                          f"{start.size})")
    if start.root != root:
        raise ReplayError(f"the ledger's {size} records are not the history these exports "
                          "continue (the roots differ)")
    records = _counted(chain.from_iterable(verifier.records(d) for d in pending), progress)
    try:
        count = app.import_records(records)
    except LedgerError as err:
        raise ReplayError(f"import failed: {err}") from err
    last = pending[-1].manifest.checkpoint
    frontier = app.sealer.frontier
    if frontier.size != last.size or frontier.root() != last.root:
        raise ReplayError(f"after the import the ledger's tree ({frontier.size} records) is not "
                          f"the signed one ({last.size} records)")
    return ImportSummary(tuple(d.manifest.day for d in pending), skipped, count, last.size,
                         last.root)


def _counted(records: Iterator[ImportedRecord],
             progress: Callable[[int], None] | None) -> Iterator[ImportedRecord]:
    count = 0
    for record in records:
        yield record
        count += 1
        if progress is not None and count % 10000 == 0:
            progress(count)
    if progress is not None:
        progress(count)

