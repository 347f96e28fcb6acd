"""The daily export delivered to real servers -- OpenSSH's SFTP, pyftpdlib over FTP and FTPS, a
folder -- then opened with the standard tools (Debian's ``age`` and ``minisign``) and
replayed on the vendor's side. Servers come from the session fixtures in conftest.py.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from exporters import (
    AgeIdentity,
    DayStatus,
    ExportNames,
    Verifier,
    decode_manifest,
    generate_age_identity,
    make_sink,
    write_age_identity,
)
from exporters.errors import SinkUnavailableError
from exporters.naming import DATA_SUFFIX
from exporters.sinks import Sink, SinkSession
from ledger import AcquireSeat, LedgerApp, ManualClock, ReleaseSeat
from seatledger.cli.main import main as cli_main
from seatledger.config.settings import Config, load_config
from seatledger.config.store import open_ledger
from seatledger.services import export as cli_export
from seatledger.services.datadir import init_data_dir
from tests.integration.servers import FtpServer, SshdServer, TcpRelay, ssh_keygen, write_known_hosts

pytestmark = pytest.mark.servers

ORIGIN = "acme.example"
# Recent enough for the command line's real clock, far enough for several days to be over.
START = (datetime.now(UTC) - timedelta(days=8)).replace(hour=8, minute=0, second=0,
                                                        microsecond=0)
DAY0 = START.date()


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"the {name} tool is required (apt-get install {name})", pytrace=False)
    return found


@pytest.fixture(scope="module")
def vendor() -> AgeIdentity:
    return generate_age_identity()


@pytest.fixture
def identity(tmp_path: Path, vendor: AgeIdentity) -> Path:
    path = tmp_path / "vendor-identity.txt"
    write_age_identity(path, vendor)
    return path


# --- Where exports go ----------------------------------------------------------------------


def _folder_on(root: Path, request: pytest.FixtureRequest) -> Path:
    folder = root / ("export-" + request.node.name.replace("[", "-").replace("]", ""))
    folder.mkdir()
    return folder


def sink_table(kind: str, request: pytest.FixtureRequest, tmp_path: Path,
               port: int | None = None) -> tuple[dict[str, Any], Path]:
    """The ``[export.sink]`` settings for a kind, and the server-side folder they write to."""
    if kind == "folder":
        folder = tmp_path / "outbox"
        folder.mkdir()
        return {"kind": "folder", "path": str(folder)}, folder
    if kind == "sftp":
        sshd: SshdServer = request.getfixturevalue("sshd_server")
        folder = _folder_on(sshd.root, request)
        known_hosts = sshd.known_hosts
        if port is not None:  # through a relay: the host is known under the relay's port
            known_hosts = write_known_hosts(tmp_path / "relay_known_hosts", port,
                                            sshd.workdir / "host_key.pub")
        return {"kind": "sftp", "host": sshd.host, "port": port or sshd.port,
                "username": sshd.username, "key_file": str(sshd.client_key),
                "known_hosts": str(known_hosts), "remote_dir": str(folder)}, folder
    ftp: FtpServer = request.getfixturevalue(f"{kind}_server")
    folder = _folder_on(ftp.root, request)
    table = {"kind": kind, "host": ftp.host, "port": port or ftp.port, "username": ftp.username,
             "password_file": str(ftp.password_file),
             "remote_dir": "/" + folder.relative_to(ftp.root).as_posix()}
    if ftp.ca_file is not None:
        table["ca_file"] = str(ftp.ca_file)
    return table, folder


def server_port(kind: str, request: pytest.FixtureRequest) -> int:
    server = request.getfixturevalue("sshd_server" if kind == "sftp" else f"{kind}_server")
    return int(server.port)


def master_dir(tmp_path: Path, recipient: str, sink: dict[str, Any]) -> Path:
    """A master data directory whose exports go to ``sink``, retrying quickly."""
    root = tmp_path / "master"
    init_data_dir(root, origin=ORIGIN, history=False)
    lines = [f"{key} = {json.dumps(value)}" for key, value in sink.items()]
    with (root / "seatledger.toml").open("a") as config:
        config.write(f'\n[export]\nrecipients = ["{recipient}"]\n\n[export.sink]\n'
                     + "\n".join(lines) + "\nattempts = 2\nfirst_delay = 0\ntimeout = 10\n")
    return root


@pytest.fixture
def ledger_of(tmp_path: Path) -> Iterator[Callable[[Path], tuple[LedgerApp, ManualClock, Config]]]:
    opened: list[LedgerApp] = []

    def open_master(root: Path) -> tuple[LedgerApp, ManualClock, Config]:
        clock = ManualClock(START)
        config = load_config(root)
        app = open_ledger(config, clock=clock)
        app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
        app.enrol_site("north")
        app.enrol_site("south")
        opened.append(app)
        return app, clock, config

    yield open_master
    for app in opened:
        app.close()


def work_day(app: LedgerApp, clock: ManualClock, day: int) -> None:
    """A day of log-ons and log-offs from 08:00; the clock ends at 08:00 the next day."""
    north = [f"n{day}-{i}" for i in range(25)]
    app.execute([AcquireSeat("north", u, "PRED", "acme", "outbound") for u in north])
    clock.advance(hours=3)
    app.execute([AcquireSeat("south", f"s{day}", "ACD", "acme", "inbound")])
    clock.advance(hours=5)
    app.execute([ReleaseSeat("north", u) for u in north[:20]])
    app.execute([ReleaseSeat("south", f"s{day}")])
    clock.advance(hours=16)


def daily_run(app: LedgerApp, config: Config, sink: Sink | None = None) -> list[Any]:
    """What the master daemon does at its daily time."""
    due = cli_export.export_due_days(app, config, app.now().date())
    return cli_export.run_exports(app, config, due, sink=sink)


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def exported(app: LedgerApp) -> list[str]:
    return [e.day for _, e in app.events() if type(e).__name__ == "AuditTrailExported"]


# --- Delivery and the standard tools -------------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "sftp", "ftp", "ftps"])
def test_each_day_is_delivered_and_opens_with_age_and_minisign(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, vendor: AgeIdentity,
    identity: Path, ledger_of: Callable[..., Any],
) -> None:
    table, folder = sink_table(kind, request, tmp_path)
    root = master_dir(tmp_path, vendor.recipient, table)
    app, clock, config = ledger_of(root)
    for day in range(2):
        work_day(app, clock, day)

    results = daily_run(app, config)

    days = [DAY0, DAY0 + timedelta(1)]
    assert [(r.day, r.status) for r in results] == [(d, DayStatus.EXPORTED) for d in days]
    expected = sorted(n for d in days for n in ExportNames(ORIGIN, d).upload_order)
    assert listing(folder) == expected
    public = root / "keys" / "export-minisign.pub"
    for day in days:
        names = ExportNames(ORIGIN, day)
        manifest = decode_manifest((folder / names.manifest).read_bytes())
        for signed in (names.data, names.manifest):
            checked = subprocess.run(
                [tool("minisign"), "-V", "-p", str(public), "-m", str(folder / signed)],
                capture_output=True, text=True, check=False)
            assert checked.returncode == 0, checked.stderr
            assert f"Trusted comment: file:{signed}\tday:{day}" in checked.stdout
        opened = subprocess.run(
            [tool("age"), "-d", "-i", str(identity), str(folder / names.data)],
            capture_output=True, check=False)
        assert opened.returncode == 0, opened.stderr.decode()
        lines = gzip.decompress(opened.stdout).decode().splitlines()
        assert len(lines) == manifest.records.count
        assert [json.loads(line)["id"] for line in lines] == list(
            range(manifest.records.first_id, manifest.records.last_id + 1))
    assert exported(app) == [d.isoformat() for d in days]

    report, summary = cli_export.import_exports(
        [folder], tmp_path / "vendor", identity_text=vendor.file_text,
        public_key_text=public.read_text())
    assert summary.imported == tuple(days)
    with open_ledger(load_config(tmp_path / "vendor")) as copy:
        assert copy.licence.pools == app.licence.pools
        assert copy.licence.sites == app.licence.sites
        assert copy.max_id() == report.days[-1].manifest.checkpoint.size


@pytest.mark.parametrize("kind", ["sftp", "ftp", "ftps"])
def test_days_missed_while_the_server_is_down_arrive_once_and_in_order(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, vendor: AgeIdentity,
    ledger_of: Callable[..., Any],
) -> None:
    relay = TcpRelay(server_port(kind, request))
    table, folder = sink_table(kind, request, tmp_path, port=relay.port)
    root = master_dir(tmp_path, vendor.recipient, table)
    app, clock, config = ledger_of(root)

    for day in range(3):  # the server is down at three daily runs
        work_day(app, clock, day)
        with pytest.raises(SinkUnavailableError, match="gave up after 2 attempts"):
            daily_run(app, config)
        assert listing(folder) == [] and exported(app) == []
    relay.up()
    try:
        work_day(app, clock, 3)
        results = daily_run(app, config)
    finally:
        relay.down()

    days = [DAY0 + timedelta(i) for i in range(4)]
    assert [r.day for r in results] == days
    assert exported(app) == [d.isoformat() for d in days]
    assert listing(folder) == sorted(n for d in days for n in ExportNames(ORIGIN, d).upload_order)
    arrival = [(folder / ExportNames(ORIGIN, d).manifest).stat().st_mtime_ns for d in days]
    assert arrival == sorted(arrival)
    report = Verifier((root / "keys" / "export-minisign.pub").read_text(),
                      identity_text=vendor.file_text).verify([folder])
    assert report.from_first_export and len(report.days) == 4


class DropMidFile(Sink):
    """A real sink whose connection drops after ``after`` bytes of the first records file."""

    def __init__(self, inner: Sink, after: int) -> None:
        super().__init__(retry=inner.retry)
        self.inner = inner
        self.after = after
        self.dropped = False

    @property
    def description(self) -> str:
        return self.inner.description

    def connect(self) -> SinkSession:
        return _DropSession(self.inner.connect(), self)


class _DropSession(SinkSession):
    def __init__(self, inner: SinkSession, owner: DropMidFile) -> None:
        self.inner = inner
        self.owner = owner

    def _dropping(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        data = b"".join(chunks)
        yield data[: self.owner.after]
        self.owner.dropped = True
        self.inner.abort()
        yield data[self.owner.after :]

    def write(self, name: str, chunks: Iterable[bytes]) -> None:
        if not self.owner.dropped and DATA_SUFFIX in name:
            chunks = self._dropping(chunks)
        self.inner.write(name, chunks)

    def size(self, name: str) -> int | None:
        return self.inner.size(name)

    def read(self, name: str) -> bytes:
        return self.inner.read(name)

    def rename(self, source: str, target: str) -> None:
        self.inner.rename(source, target)

    def remove(self, name: str) -> None:
        self.inner.remove(name)

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()


@pytest.mark.parametrize("kind", ["folder", "sftp", "ftp", "ftps"])
def test_an_upload_broken_mid_file_leaves_no_partial_file_under_its_name(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, vendor: AgeIdentity,
    ledger_of: Callable[..., Any],
) -> None:
    table, folder = sink_table(kind, request, tmp_path)
    root = master_dir(tmp_path, vendor.recipient, table)
    app, clock, config = ledger_of(root)
    work_day(app, clock, 0)
    settings = cli_export.load_export_settings(config).sink
    names = ExportNames(ORIGIN, DAY0)

    # One attempt only, so that the run ends with the broken transfer.
    broken = DropMidFile(make_sink(attrs.evolve(settings, attempts=1)), after=200)
    with pytest.raises(SinkUnavailableError):
        daily_run(app, config, sink=broken)

    assert broken.dropped
    left = listing(folder)
    assert not set(left) & set(names.upload_order)
    assert all(n.startswith(f".{names.data}.") and n.endswith(".part") for n in left)
    assert exported(app) == []

    [result] = daily_run(app, config)

    assert result.status is DayStatus.EXPORTED
    assert set(names.upload_order) <= set(listing(folder))
    assert exported(app) == [DAY0.isoformat()]
    Verifier((root / "keys" / "export-minisign.pub").read_text(),
             identity_text=vendor.file_text).verify([folder / names.manifest])


# --- The command line against a real server ------------------------------------------------


def _past_ledger(root: Path) -> None:
    clock = ManualClock(START)
    with open_ledger(load_config(root), clock=clock) as app:
        app.issue_licence(customer="Acme", limits={"PRED": 100, "ACD": 20})
        app.enrol_site("north")
        app.enrol_site("south")
        work_day(app, clock, 0)


def test_command_line_run_over_sftp_then_verify_and_import(
    request: pytest.FixtureRequest, tmp_path: Path, vendor: AgeIdentity, identity: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    table, folder = sink_table("sftp", request, tmp_path)
    root = master_dir(tmp_path, vendor.recipient, table)
    _past_ledger(root)

    assert cli_main(["export", "run", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{DAY0}  exported ")
    assert f"to {table['kind']}://" in out
    public = str(root / "keys" / "export-minisign.pub")
    assert cli_main(["export", "verify", str(folder), "--public-key", public,
                            "--identity", str(identity)]) == 0
    assert cli_main(["export", "import", str(folder), "--data-dir",
                            str(tmp_path / "vendor"), "--public-key", public,
                            "--identity", str(identity)]) == 0
    out = capsys.readouterr().out
    assert "imported" in out
    assert cli_main(["export", "run", "--data-dir", str(root)]) == 0
    assert "already exported" in capsys.readouterr().out


def test_a_wrong_sftp_host_key_is_refused_at_once_and_nothing_is_recorded(
    request: pytest.FixtureRequest, tmp_path: Path, vendor: AgeIdentity,
    sshd_server: SshdServer, capsys: pytest.CaptureFixture[str],
) -> None:
    table, folder = sink_table("sftp", request, tmp_path)
    other = ssh_keygen(tmp_path / "impostor_host_key")
    table["known_hosts"] = str(write_known_hosts(tmp_path / "wrong_known_hosts",
                                                 sshd_server.port, Path(f"{other}.pub")))
    root = master_dir(tmp_path, vendor.recipient, table)
    with (root / "seatledger.toml").open("a") as config:
        config.write("max_delay = 30\n")
    config_text = (root / "seatledger.toml").read_text().replace("first_delay = 0",
                                                                 "first_delay = 30")
    (root / "seatledger.toml").write_text(config_text)
    _past_ledger(root)

    started = time.monotonic()
    code = cli_main(["export", "run", "--data-dir", str(root)])
    elapsed = time.monotonic() - started

    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "host key" in err and "does not match" in err
    assert elapsed < 20  # refused at once: a wrong host key is never retried
    assert listing(folder) == []
    with open_ledger(load_config(root)) as app:
        assert exported(app) == []

