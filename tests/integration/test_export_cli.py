"""``seatledger export ...`` on real data directories with a folder sink: exit statuses, one-line
errors, and the functions the master daemon and the demo call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from exporters import AgeIdentity, ExportNames, generate_age_identity, write_age_identity
from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat
from seatledger.cli.main import main as cli_main
from seatledger.config.keys import export_public_key_text
from seatledger.config.settings import ConfigError, load_config
from seatledger.config.store import open_ledger
from seatledger.services import export as cli_export
from seatledger.services.datadir import init_data_dir

ORIGIN = "acme.example"
# Three days ago, so that the command line's real clock finds three days over.
START = (datetime.now(UTC) - timedelta(days=3)).replace(hour=9, minute=0, second=0,
                                                        microsecond=0)
DAYS = [START.date() + timedelta(days=i) for i in range(3)]


def work(app: LedgerApp, clock: ManualClock, day: int) -> None:
    users = [f"d{day}-{i}" for i in range(15)]
    app.execute([AcquireSeat("north", u, "PRED", "acme", "outbound") for u in users])
    clock.advance(hours=6)
    app.execute([ReleaseSeat("north", u) for u in users[:10]])
    clock.advance(hours=18)


@pytest.fixture(scope="module")
def vendor() -> AgeIdentity:
    return generate_age_identity()


@pytest.fixture
def identity(tmp_path: Path, vendor: AgeIdentity) -> Path:
    path = tmp_path / "vendor-identity.txt"
    write_age_identity(path, vendor)
    return path


def configure(root: Path, recipient: str, outbox: Path) -> None:
    with (root / "seatledger.toml").open("a") as config:
        config.write(f'\n[export]\nrecipients = ["{recipient}"]\ntime = "01:30"\n\n'
                     f'[export.sink]\nkind = "folder"\npath = "{outbox}"\n')


@pytest.fixture
def master(tmp_path: Path, vendor: AgeIdentity) -> Path:
    """A master data directory with two working days, three days ago, and export settings."""
    root = tmp_path / "master"
    init_data_dir(root, origin=ORIGIN, history=False)
    clock = ManualClock(START)
    with open_ledger(load_config(root), clock=clock) as app:
        app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
        app.enrol_site("north")
        work(app, clock, 0)
        work(app, clock, 1)
    (tmp_path / "outbox").mkdir()
    configure(root, vendor.recipient, tmp_path / "outbox")
    return root


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    def invoke(*argv: str | Path) -> tuple[int, str, str]:
        code = cli_main(["export", *map(str, argv)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    yield invoke


def test_run_exports_every_day_over_then_reports_them_as_done(
    master: Path, tmp_path: Path, run: object
) -> None:
    code, out, err = run("run", "--data-dir", master)  # type: ignore[operator]

    assert (code, err) == (0, "")
    assert [line.split()[0] for line in out.splitlines()] == [d.isoformat() for d in DAYS]
    assert "exported 27 record(s) [1..27]" in out.splitlines()[0]
    assert len(list((tmp_path / "outbox").iterdir())) == 12

    code, out, _ = run("run", "--data-dir", master, "--json")  # type: ignore[operator]
    assert code == 0
    assert json.loads(out)["days"][0]["status"] == "already exported"


def test_run_for_a_day_exports_the_days_before_it_too(master: Path, run: object) -> None:
    code, out, _ = run("run", "--data-dir", master, "--day", DAYS[1].isoformat())  # type: ignore[operator]

    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == [d.isoformat() for d in DAYS[:2]]


def test_run_for_a_day_not_over_is_bad_usage(master: Path, run: object) -> None:
    today = datetime.now(UTC).date().isoformat()

    code, _, err = run("run", "--data-dir", master, "--day", today)  # type: ignore[operator]

    assert code == 2
    assert err.startswith(f"seatledger: {today} is not over yet") and err.count("\n") == 1


def test_run_without_export_settings_fails_in_one_line(tmp_path: Path, run: object) -> None:
    root = tmp_path / "bare"
    init_data_dir(root, origin=ORIGIN, history=False)

    code, _, err = run("run", "--data-dir", root)  # type: ignore[operator]

    assert code == 1
    assert "no [export] table" in err and err.count("\n") == 1


def test_wrong_export_settings_fail_in_one_line(master: Path, run: object) -> None:
    with (master / "seatledger.toml").open("a") as config:
        config.write("colour = 'blue'\n")  # lands in [export.sink]

    code, _, err = run("run", "--data-dir", master)  # type: ignore[operator]

    assert code == 1
    assert "[export.sink] has unknown key(s): colour" in err and err.count("\n") == 1


def test_an_unreachable_folder_fails_in_one_line_after_retrying(
    master: Path, tmp_path: Path, run: object
) -> None:
    (tmp_path / "outbox").rmdir()
    with (master / "seatledger.toml").open("a") as config:
        config.write("attempts = 2\nfirst_delay = 0\n")

    code, _, err = run("run", "--data-dir", master)  # type: ignore[operator]

    assert code == 1
    assert "gave up after 2 attempts" in err and "folder does not exist" in err
    assert err.count("\n") == 1


def test_verify_import_and_decrypt_on_the_recipients_side(
    master: Path, tmp_path: Path, identity: Path, run: object
) -> None:
    run("run", "--data-dir", master)  # type: ignore[operator]
    outbox, public = tmp_path / "outbox", master / "keys" / "export-minisign.pub"
    vendor_dir = tmp_path / "vendor"

    code, out, err = run("verify", outbox, "--public-key", public, "--identity", identity)  # type: ignore[operator]
    assert (code, err) == (0, "")
    assert out.startswith(f"verified 3 day(s) {DAYS[0]}..{DAYS[2]} of {ORIGIN}")

    code, out, err = run("import", outbox, "--data-dir", vendor_dir,  # type: ignore[operator]
                         "--public-key", public, "--identity", identity, "--json")
    assert (code, err) == (0, "")
    imported = json.loads(out)
    assert imported["imported_days"] == [d.isoformat() for d in DAYS]

    # The recorded checkpoints it now holds were signed with the master's ledger key.
    assert (vendor_dir / "keys" / "origin-checkpoint.pub").read_bytes() == (
        master / "keys" / "signing.pub").read_bytes()
    with open_ledger(load_config(master)) as app, open_ledger(load_config(vendor_dir)) as copy:
        assert copy.max_id() == imported["tree_size"]
        assert copy.licence.pools == app.licence.pools
        assert copy.licence.sites == app.licence.sites

    # The key is pinned: later imports need not name it, and may not name another.
    code, out, _ = run("import", outbox, "--data-dir", vendor_dir, "--identity", identity)  # type: ignore[operator]
    assert code == 0 and out.startswith("nothing to import")
    code, _, err = run("import", outbox, "--data-dir", vendor_dir, "--identity", identity,  # type: ignore[operator]
                       "--public-key", tmp_path / "master" / "keys" / "signing.pub")
    assert code == 1 and "already trusts another master key" in err

    day = ExportNames(ORIGIN, DAYS[0])
    code, out, _ = run("decrypt", outbox / day.manifest, "--identity", identity,  # type: ignore[operator]
                       "--public-key", public)
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == list(range(1, 28))
    code, out, _ = run("decrypt", outbox / day.data, "--identity", identity,  # type: ignore[operator]
                       "-o", tmp_path / "day.jsonl")
    assert code == 0 and out.startswith("wrote 27 record(s)")


def test_first_import_without_the_masters_key_is_bad_usage(
    master: Path, tmp_path: Path, identity: Path, run: object
) -> None:
    run("run", "--data-dir", master)  # type: ignore[operator]

    code, _, err = run("import", tmp_path / "outbox", "--data-dir", tmp_path / "vendor",  # type: ignore[operator]
                       "--identity", identity)

    assert code == 2 and "give --public-key" in err
    assert not (tmp_path / "vendor").exists()


def test_a_tampered_export_fails_verify_and_import_in_one_line(
    master: Path, tmp_path: Path, identity: Path, run: object
) -> None:
    run("run", "--data-dir", master)  # type: ignore[operator]
    outbox, public = tmp_path / "outbox", master / "keys" / "export-minisign.pub"
    path = outbox / ExportNames(ORIGIN, DAYS[1]).manifest
    path.write_bytes(path.read_bytes().replace(b'"count": ', b'"count":  '))

    code, _, err = run("verify", outbox, "--public-key", public, "--identity", identity)  # type: ignore[operator]
    assert code == 1
    assert err == (f"seatledger: export verify failed: {DAYS[1]}: {path.name}: the signature "
                   "does not match the file (altered, truncated or re-signed)\n")

    code, _, err = run("import", outbox, "--data-dir", tmp_path / "vendor",  # type: ignore[operator]
                       "--public-key", public, "--identity", identity)
    assert code == 1 and err.startswith("seatledger: export import failed: ")
    assert not (tmp_path / "vendor").exists()


def test_key_shows_the_export_key_to_send_to_the_vendor(master: Path, run: object) -> None:
    code, out, _ = run("key", "--data-dir", master, "--json")  # type: ignore[operator]

    shown = json.loads(out)
    assert code == 0
    assert shown["minisign_public_key"] in (master / "keys" / "export-minisign.pub").read_text()
    assert (master / "keys" / "export-minisign.key").stat().st_mode & 0o777 == 0o600
    assert shown["checkpoint_key"].startswith(f"{ORIGIN}+")


def test_the_daemons_functions_export_what_is_due(master: Path, tmp_path: Path) -> None:
    config = load_config(master)
    clock = ManualClock(datetime.combine(DAYS[2], datetime.min.time(), UTC)
                        + timedelta(hours=30))
    with open_ledger(config, clock=clock) as app:
        today = clock.now().date()
        due = cli_export.export_due_days(app, config, today)

        results = cli_export.run_exports(app, config, due)

        assert due == DAYS and [r.day for r in results] == DAYS
        assert cli_export.export_due_days(app, config, today) == []
    assert cli_export.next_export_at(config, datetime(2026, 3, 2, 1, 0, tzinfo=UTC)) == (
        datetime(2026, 3, 2, 1, 30, tzinfo=UTC))
    assert cli_export.next_export_at(config, datetime(2026, 3, 2, 1, 30, tzinfo=UTC)) == (
        datetime(2026, 3, 3, 1, 30, tzinfo=UTC))


def test_nothing_is_due_without_export_settings(tmp_path: Path) -> None:
    root = tmp_path / "bare"
    init_data_dir(root, origin=ORIGIN, history=False)
    config = load_config(root)
    with open_ledger(config, clock=ManualClock(START)) as app:
        app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
        assert cli_export.export_due_days(app, config, date(2099, 1, 1)) == []
    with pytest.raises(ConfigError, match="no \\[export\\] table"):
        cli_export.load_export_settings(config)


def test_demo_helpers_export_to_a_folder_and_import_into_a_second_data_dir(
    master: Path, tmp_path: Path, vendor: AgeIdentity
) -> None:
    config = load_config(master)
    folder = tmp_path / "vendor-inbox"
    with open_ledger(config) as app:
        results = cli_export.export_to_folder(app, config.layout, folder, [vendor.recipient])
        public = export_public_key_text(config.layout)

    report, summary = cli_export.import_exports(
        [folder], tmp_path / "vendor", identity_text=vendor.file_text, public_key_text=public)

    assert [r.day for r in results] == DAYS == list(summary.imported)
    assert report.records == summary.records


def test_the_vendors_reports_equal_the_masters_for_the_exported_days(
    master: Path, tmp_path: Path, vendor: AgeIdentity
) -> None:
    from projections import ProjectionRunner

    config = load_config(master)
    with open_ledger(config) as app:
        cli_export.export_to_folder(app, config.layout, tmp_path / "inbox", [vendor.recipient])
        public = export_public_key_text(config.layout)
    cli_export.import_exports([tmp_path / "inbox"], tmp_path / "vendor",
                              identity_text=vendor.file_text, public_key_text=public)
    start = datetime.combine(DAYS[0], datetime.min.time(), UTC)
    end = start + timedelta(days=len(DAYS))  # the vendor's history ends there
    noon = start + timedelta(days=1, hours=12)

    answers = []
    for root in (master, tmp_path / "vendor"):
        with open_ledger(load_config(root)) as app, ProjectionRunner(app) as views:
            views.run_once()
            status = views.status()
            assert status is not None
            answers.append((
                views.usage(start, end, by="site", as_of=end).rows,
                views.usage(start, end, by="campaign", period="hour", as_of=end).rows,
                views.state_at(noon), views.history("d1-3"),
                status.pools, status.sites,
            ))

    assert answers[0] == answers[1]
    assert answers[0][0]  # the report is not empty
