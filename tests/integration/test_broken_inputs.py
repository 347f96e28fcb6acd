"""Broken inputs get one clear line and lose nothing: a damaged configuration, a missing,
empty, truncated or garbage store, a deleted external checkpoint, and a full disk."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from seatledger.cli.main import main

EXIT_FAILED = 1


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    assert main(["init", "--data-dir", str(root)]) == 0  # its history begins, in trial
    return root


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _show(root: Path) -> int:
    return main(["licence", "show", "--data-dir", str(root)])


def test_a_config_that_is_not_utf8_is_one_line(data: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    (data / "seatledger.toml").write_bytes(b"\xff\xfe[store]\n")
    capsys.readouterr()
    assert _show(data) == EXIT_FAILED
    _one_line_error(capsys, "not UTF-8")


def test_an_empty_config_is_refused_and_nothing_is_signed_under_a_wrong_name(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = data / "seatledger.toml"
    original = config.read_bytes()
    config.write_bytes(b"")
    before = (data / "ledger.db").read_bytes()
    capsys.readouterr()
    assert main(["site", "enrol", "north", "--data-dir", str(data)]) == EXIT_FAILED
    _one_line_error(capsys, "[seal] origin is missing")
    assert (data / "ledger.db").read_bytes() == before
    config.write_bytes(original)
    assert main(["audit", "verify", "--data-dir", str(data)]) == 0


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_store_is_one_line_and_left_as_it_is(
        data: Path, capsys: pytest.CaptureFixture[str], damage: str) -> None:
    db = data / "ledger.db"
    for side in ("ledger.db-wal", "ledger.db-shm"):
        (data / side).unlink(missing_ok=True)
    content = db.read_bytes()[:5000] if damage == "truncated" else os.urandom(100_000)
    db.write_bytes(content)
    capsys.readouterr()
    assert _show(data) == EXIT_FAILED
    _one_line_error(capsys, "damaged")
    assert main(["audit", "verify", "--data-dir", str(data)]) == EXIT_FAILED
    _one_line_error(capsys, "damaged")
    assert db.read_bytes() == content


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_missing_store_is_reported_and_nothing_is_created(
        data: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm"):
        (data / name).unlink(missing_ok=True)
    if how == "emptied":
        (data / "ledger.db").write_bytes(b"")
    capsys.readouterr()
    assert main(["site", "enrol", "north", "--data-dir", str(data)]) == EXIT_FAILED
    _one_line_error(capsys, "missing or empty", "nothing was created")
    assert (data / "ledger.db").exists() == (how == "emptied")
    assert not (data / "ledger.db").exists() or (data / "ledger.db").stat().st_size == 0


def test_a_deleted_external_checkpoint_is_reported_even_after_new_writes(
        data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data / "seal" / "latest.checkpoint").unlink()
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(data)]) == EXIT_FAILED
    _one_line_error(capsys, "latest.checkpoint", "is missing")
    # A later writer writes a fresh file; the loss is still reported until accepted.
    assert main(["site", "enrol", "north", "--data-dir", str(data)]) == 0
    assert (data / "seal" / "latest.checkpoint").exists()
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(data)]) == EXIT_FAILED
    _one_line_error(capsys, "found missing when the store held 2 records")
    (data / "seal" / "latest.checkpoint.lost").unlink()
    assert main(["audit", "verify", "--data-dir", str(data)]) == 0


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A small file system of its own (a tmpfs that .ci/run mounts): filled up by the test."""
    where = os.environ.get("SEATLEDGER_TEST_SMALL_FS")
    assert where, "SEATLEDGER_TEST_SMALL_FS is not set: run the tests through .ci/run"
    root = Path(where) / uuid.uuid4().hex
    root.mkdir()
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_full_disk_is_one_line_and_loses_nothing(
        small_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = small_disk / "data"
    assert main(["init", "--data-dir", str(data)]) == 0
    filler = small_disk / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass  # the disk is full: that is the point of the test
    try:
        capsys.readouterr()
        assert main(["audit", "verify", "--data-dir", str(data)]) in (0, EXIT_FAILED)
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
        assert main(["site", "enrol", "north", "--data-dir", str(data)]) == EXIT_FAILED
        err = _one_line_error(capsys)
        assert "full" in err or "No space" in err, err
    finally:
        filler.unlink()
    assert main(["audit", "verify", "--data-dir", str(data)]) == 0
    assert main(["site", "enrol", "north", "--data-dir", str(data)]) == 0
