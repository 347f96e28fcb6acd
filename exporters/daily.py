"""Running the daily export: which days are due, and exporting them in order.

Theory of operation. Days are exported strictly in order, each building on the tree where
the previous export left it. For each day not yet recorded as exported:

1. reuse the files built earlier (in the outbox) if they still follow the previous export,
   else build them and store them in the outbox first;
2. upload the four files (the manifest last) -- the sink retries with backoff, skips files
   already delivered with the same content and refuses to overwrite different content;
3. record AuditTrailExported in the ledger, then drop the records file from the outbox.

A failure stops the run at that day; the days before it stay exported. Whatever the point
of interruption, the next run finishes the same day with the same bytes, then goes on.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import date, timedelta

import attrs

from ledger import LedgerApp

from .build import BuiltExport, build_day, chain_after
from .chain import ChainState
from .envelope import SigningKey, export_comment, verify_signature
from .errors import BuildError, RemoteMissingError, SignatureError
from .manifest import Manifest
from .naming import ExportNames
from .outbox import Outbox
from .records import decode_record
from .sinks import Sink, UploadStatus

__all__ = [
    "DailyExport",
    "DayResult",
    "DayStatus",
    "due_days",
    "exported_days",
    "first_day",
]


class DayStatus(enum.Enum):
    """What a run did with a day."""

    EXPORTED = "exported"
    ALREADY_EXPORTED = "already exported"


@attrs.frozen
class DayResult:
    """One day of a run. ``uploaded`` names the files written now (others were already there).
    For a day exported by an earlier run only ``day``, ``status`` and ``sha256`` are known."""

    day: date
    status: DayStatus
    sha256: str
    first_id: int | None = None
    last_id: int | None = None
    records: int | None = None
    destination: str | None = None
    uploaded: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"day": self.day.isoformat(), "status": self.status.value, "sha256": self.sha256,
                "first_id": self.first_id, "last_id": self.last_id, "records": self.records,
                "destination": self.destination, "uploaded": list(self.uploaded)}


def first_day(app: LedgerApp) -> date | None:
    """The UTC day of the ledger's first record, or ``None`` for an empty ledger."""
    for notification, payload in app.records(1, 1):
        return decode_record(notification.originator_id, notification.originator_version,
                             notification.topic, payload).day
    return None


def exported_days(app: LedgerApp) -> dict[date, str]:
    """Days recorded as exported, with the SHA-256 of their records file."""
    if not app.has_licence:
        return {}
    return {date.fromisoformat(day): sha for day, sha in app.licence.exported_days.items()}


def due_days(app: LedgerApp, today: date) -> list[date]:
    """Days over (before ``today`` and before the ledger's own time) and not yet exported,
    oldest first: from the day after the last export, or from the first record's day."""
    done = exported_days(app)
    start = max(done) + timedelta(days=1) if done else first_day(app)
    if start is None:
        return []
    end = min(today, app.now().date()) - timedelta(days=1)
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


class DailyExport:
    """Exports days of ``app`` to ``sink``, keeping built files in ``outbox``.

    ``progress(day, records)`` is called while a day's records are read.
    """

    def __init__(
        self,
        app: LedgerApp,
        sink: Sink,
        outbox: Outbox,
        *,
        recipients: list[str],
        signing_key: SigningKey,
        progress: Callable[[date, int], None] | None = None,
        on_day: Callable[[DayResult], None] | None = None,
        destination: str | None = None,
    ) -> None:
        """``destination`` is what each delivery is recorded as (default: the sink's own
        description): the URL a licence names, when it directs where exports go."""
        self.app = app
        self.destination = destination
        self.sink = sink
        self.outbox = outbox
        self.recipients = list(recipients)
        self.signing_key = signing_key
        self.progress = progress
        self.on_day = on_day

    def run(self, through: date) -> list[DayResult]:
        """Export every day not yet exported up to and including ``through``, in order.

        ``through`` itself is reported as already exported if it was. Returns one result per
        day (none when the ledger has no records up to ``through``).

        Raises:
            BuildError: ``through`` is not over yet, or the ledger disagrees with what was
                exported before.
            SinkError: a delivery failed (days before it stay exported).
            LedgerError: recording the export failed.
        """
        done = exported_days(self.app)
        if through in done:
            return [self._report(DayResult(through, DayStatus.ALREADY_EXPORTED, done[through]))]
        now = self.app.now()
        if through >= now.date():
            raise BuildError(f"{through} is not over yet (the ledger's time is "
                             f"{now:%Y-%m-%d %H:%M}Z)")
        days = due_days(self.app, through + timedelta(days=1))
        if not days:
            return []
        state = self._state_before(days[0], done)
        results = []
        for day in days:
            built = self._reuse(day, state) or self._build(day, state)
            results.append(self._report(self._deliver(built)))
            state = built.after
        return results

    def _report(self, result: DayResult) -> DayResult:
        if self.on_day is not None:
            self.on_day(result)
        return result

    def _state_before(self, day: date, done: dict[date, str]) -> ChainState:
        """The chain state the export of ``day`` starts from."""
        previous = day - timedelta(days=1)
        if previous not in done:
            return ChainState.genesis()
        names = ExportNames(self.app.origin, previous)
        stored = self.outbox.manifest(names)
        # The manifest that was delivered is the one whose records file was recorded.
        if stored is None or stored[0].data.sha256 != done[previous]:
            stored = self._fetch_manifest(names)
            if stored[0].data.sha256 != done[previous]:
                raise BuildError(f"the manifest of {previous} on {self.sink.description} is "
                                 "not the one recorded as exported")
        manifest, data = stored
        return chain_after(self.app, manifest, names.manifest, data)

    def _fetch_manifest(self, names: ExportNames) -> tuple[Manifest, bytes]:
        """The previous day's manifest from the sink, when the local copy is gone."""
        try:
            data = self.sink.fetch(names.manifest)
            signature = self.sink.fetch(names.manifest_signature)
        except RemoteMissingError:
            raise BuildError(
                f"cannot continue the chain: the manifest of {names.day} is neither in "
                f"{self.outbox.folder} nor on {self.sink.description}"
            ) from None
        try:
            verify_signature(data, signature, self.signing_key.public_key_text,
                             expected_comment=export_comment(names.manifest, names.day))
        except SignatureError as err:
            raise BuildError(f"{self.sink.description}: {names.manifest}: {err}") from None
        self.outbox.save_manifest(names, data, signature)
        stored = self.outbox.manifest(names)
        assert stored is not None
        return stored

    def _reuse(self, day: date, state: ChainState) -> BuiltExport | None:
        """The files built for ``day`` by an earlier run, if they still follow ``state``."""
        names = ExportNames(self.app.origin, day)
        stored = self.outbox.manifest(names)
        files = self.outbox.files(names)
        if stored is None or files is None:
            return None
        manifest, data = stored
        if manifest.previous != state.as_previous():
            return None
        after = chain_after(self.app, manifest, names.manifest, data)
        return BuiltExport(manifest, data, names, files, after)

    def _build(self, day: date, state: ChainState) -> BuiltExport:
        progress = self.progress
        built = build_day(
            self.app, day, state, recipients=self.recipients, signing_key=self.signing_key,
            progress=(lambda n: progress(day, n)) if progress is not None else None,
        )
        self.outbox.save(built)
        return built

    def _deliver(self, built: BuiltExport) -> DayResult:
        uploads = self.sink.upload_all(built.files)
        manifest = built.manifest
        records = manifest.records
        self.app.record_export(manifest.day.isoformat(), records.first_id, records.last_id,
                               self.destination or self.sink.description,
                               manifest.data.sha256)
        self.outbox.prune(built.names)
        return DayResult(
            manifest.day, DayStatus.EXPORTED, manifest.data.sha256, records.first_id,
            records.last_id, records.count, self.sink.description,
            tuple(u.name for u in uploads if u.status is UploadStatus.UPLOADED),
        )
