"""The ``[export]`` table of seatledger.toml: what it accepts and the one-line refusals."""

from __future__ import annotations

from datetime import UTC, time
from pathlib import Path
from typing import Any

import pytest

from exporters import ExportConfigError, generate_age_identity, make_sink, parse_export_settings
from exporters.sinks import FtpsSink, LocalSink, SftpSink

RECIPIENT = generate_age_identity().recipient


def table(**sink: Any) -> dict[str, Any]:
    return {"recipients": [RECIPIENT], "time": "02:15", "sink": sink}


def test_sftp_settings_resolve_paths_against_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "known_hosts").write_text("")
    (tmp_path / "keys" / "vendor.password").write_text("pw\n")

    settings = parse_export_settings(table(
        kind="sftp", host="sftp.vendor.example", username="acme",
        known_hosts="keys/known_hosts", password_file="keys/vendor.password",
        remote_dir="in", attempts=3, first_delay=0.5), tmp_path)

    assert settings.recipients == (RECIPIENT,)
    assert settings.time == time(2, 15, tzinfo=UTC)
    sink = settings.sink
    assert (sink.port, sink.known_hosts) == (22, tmp_path / "keys" / "known_hosts")
    built = make_sink(sink)
    assert isinstance(built, SftpSink)
    assert built.description == "sftp://acme@sftp.vendor.example:22/in"
    assert (built.retry.attempts, built.retry.first_delay) == (3, 0.5)


def test_a_pinned_host_key_stands_in_for_known_hosts(tmp_path: Path) -> None:
    (tmp_path / "vendor.password").write_text("pw\n")
    settings = parse_export_settings(table(
        kind="sftp", host="h", username="u", password_file="vendor.password",
        host_key="SHA256:" + "A" * 43), tmp_path)
    built = make_sink(settings.sink)
    assert isinstance(built, SftpSink)
    assert (built.known_hosts, built.host_key) == (None, "SHA256:" + "A" * 43)


def test_folder_and_ftps_sinks_are_built(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret")

    folder = make_sink(parse_export_settings(table(kind="folder", path="/srv/out"), tmp_path).sink)
    ftps = make_sink(parse_export_settings(
        table(kind="ftps", host="h", username="u", password_file="pw"), tmp_path).sink)

    assert isinstance(folder, LocalSink) and folder.directory == Path("/srv/out")
    assert isinstance(ftps, FtpsSink) and ftps.port == 21


@pytest.mark.parametrize(
    ("export", "reason"),
    [
        ({"time": "01:30"}, "recipients must be a list of age public keys"),
        ({"recipients": []}, "no age recipients configured"),
        ({"recipients": ["ssh-ed25519 AAAA"]}, "not an age X25519 public key"),
        ({"recipients": [RECIPIENT]}, "[export.sink] is missing"),
        ({"recipients": [RECIPIENT], "time": "25:00", "sink": {"kind": "folder", "path": "x"}},
         'time must be "HH:MM"'),
        ({"recipients": [RECIPIENT], "colour": 1}, "[export] has unknown key(s): colour"),
        (table(kind="s3"), "kind must be one of folder, sftp, ftp, ftps"),
        (table(kind="folder"), "path is required for kind 'folder'"),
        (table(kind="sftp", host="h", username="u", key_file="k"), "known_hosts is required"),
        (table(kind="sftp", host="h", username="u", known_hosts="kh"),
         "exactly one of key_file and password_file"),
        (table(kind="ftp", host="h", username="u"), "password_file is required"),
        (table(kind="ftp", host="h", username="u", password="inline!"),
         "unknown key(s): password"),
        (table(kind="ftp", host="h", username="u", password_file="p", port="21"),
         "port has the wrong type"),
        (table(kind="ftp", host="h", username="u", password_file="p", attempts=0),
         "attempts must be at least 1"),
    ],
)
def test_wrong_settings_are_refused_in_one_line(
    tmp_path: Path, export: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ExportConfigError) as raised:
        parse_export_settings(export, tmp_path, where="x/seatledger.toml")

    assert str(raised.value).startswith("x/seatledger.toml: ")
    assert reason in str(raised.value)
    assert "\n" not in str(raised.value)
