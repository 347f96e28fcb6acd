"""The export the licence obliges: it goes where the licence directs (the configuration gives
only credentials), to the licence's recipients, and only a delivery there counts."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from exporters.errors import HostKeyError
from ledger import ManualClock
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.export import run_exports
from tests.integration.servers import SshdServer
from tests.licensing import Vendor

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def _master(tmp_path: Path, vendor: Vendor, config_tail: str = "") -> Path:
    root = tmp_path / "master"
    vendor.init_master(root)
    vendor.install(root, now=datetime.now(UTC) - timedelta(minutes=1))
    if config_tail:
        with (root / "seatledger.toml").open("a") as f:
            f.write(config_tail)
    return root


def _exports(root: Path, clock: ManualClock) -> tuple[list[str], list[object]]:
    config = load_config(root)
    with open_ledger(config, clock=clock) as app:
        yesterday = app.now().date() - timedelta(days=1)
        results = run_exports(app, config, [yesterday])
        recorded = [e for _, e in app.events() if type(e).__name__ == "AuditTrailExported"]
        return [r.status.name for r in results], recorded


def test_a_folder_destination_needs_no_export_configuration(tmp_path: Path) -> None:
    vendor = Vendor(tmp_path / "vendor")
    root = _master(tmp_path, vendor)
    clock = ManualClock(datetime.now(UTC) + timedelta(days=2))
    statuses, recorded = _exports(root, clock)
    assert statuses and all(s == "EXPORTED" for s in statuses)
    destination = vendor.config.export_destination
    assert destination == (tmp_path / "vendor" / "inbox").as_uri()
    assert {e.destination for e in recorded} == {destination}  # type: ignore[attr-defined]
    assert sorted(p.name for p in (tmp_path / "vendor" / "inbox").iterdir())
    with open_ledger(load_config(root), clock=clock) as app:
        assert app.licence.export_due_since == recorded[-1].timestamp  # type: ignore[attr-defined]
        assert not app.licence.export_overdue


def _fingerprint(known_hosts: Path) -> str:
    tool = shutil.which("ssh-keygen")
    assert tool is not None, "ssh-keygen is missing (the CI installs openssh-client)"
    out = subprocess.run([tool, "-lf", str(known_hosts)], capture_output=True, text=True,
                         check=True).stdout
    return out.split()[1]  # "256 SHA256:... [127.0.0.1]:port (ED25519)"


def _sftp_master(tmp_path: Path, sshd: SshdServer, host_key: str, folder: Path) -> Path:
    folder.mkdir()
    vendor = Vendor(tmp_path / "vendor",
                    destination=f"sftp://{sshd.host}:{sshd.port}{folder}", host_key=host_key)
    # The customer's configuration supplies only the credentials: no host, no known_hosts.
    return _master(tmp_path, vendor, "\n[export]\nrecipients = []\n\n[export.sink]\n"
                   f'kind = "sftp"\nusername = "{sshd.username}"\n'
                   f'key_file = "{sshd.client_key}"\nhost = "elsewhere.example"\n')


def test_sftp_to_the_licences_destination_with_its_pinned_host_key(
        tmp_path: Path, sshd_server: SshdServer) -> None:
    folder = sshd_server.root / f"inbox-{tmp_path.name}"
    root = _sftp_master(tmp_path, sshd_server, _fingerprint(sshd_server.known_hosts), folder)
    statuses, recorded = _exports(root, ManualClock(datetime.now(UTC) + timedelta(days=2)))
    assert statuses and all(s == "EXPORTED" for s in statuses)
    assert any(p.name.endswith(".manifest.json") for p in folder.iterdir())
    assert {e.destination for e in recorded} == {  # type: ignore[attr-defined]
        f"sftp://{sshd_server.host}:{sshd_server.port}{folder}"}


def test_a_server_without_the_pinned_host_key_is_refused(
        tmp_path: Path, sshd_server: SshdServer) -> None:
    folder = sshd_server.root / f"inbox-{tmp_path.name}"
    root = _sftp_master(tmp_path, sshd_server, "SHA256:" + "A" * 43, folder)
    with pytest.raises(HostKeyError, match="is not the pinned SHA256:AAAA"):
        _exports(root, ManualClock(datetime.now(UTC) + timedelta(days=2)))
    assert list(folder.iterdir()) == []
