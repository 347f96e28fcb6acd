"""``LedgerApp.refresh()``, which a master runs before every batch: it catches up with what
another connection committed to the SQLite file, and reads the store's top only when
SQLite's data version says another connection did commit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from ledger import AcquireSeat, Grant, LedgerApp
from tests.processes import die_with_parent

Open = Callable[..., LedgerApp]


def counting_tops(monkeypatch: pytest.MonkeyPatch, app: LedgerApp) -> list[int]:
    """Every ``max_id()`` (the ``SELECT MAX(id)`` of the check) ``app`` runs, recorded."""
    tops: list[int] = []
    max_id = app.max_id

    def counted() -> int:
        tops.append(max_id())
        return tops[-1]

    monkeypatch.setattr(app, "max_id", counted)
    return tops


@pytest.fixture
def master(open_ledger: Open, tmp_path: Path) -> LedgerApp:
    app = open_ledger(f"sqlite:///{tmp_path}/ledger.db")
    app.issue_licence(customer="Acme", limits={"PRED": 100})
    app.enrol_site("north")
    return app


def test_own_commits_do_not_read_the_top_and_a_foreign_one_is_caught_up(
        master: LedgerApp, open_ledger: Open, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    tops = counting_tops(monkeypatch, master)
    assert master.refresh() is False  # the first call reads the top once
    assert len(tops) == 1
    for n in range(20):
        assert master.refresh() is False
        outcome = master.execute([AcquireSeat("north", f"u{n}", "PRED")])[0]
        assert isinstance(outcome, Grant)
    assert len(tops) == 1  # twenty batches of its own: never read again

    operator = open_ledger(f"sqlite:///{tmp_path}/ledger.db")
    operator.enrol_site("east")  # another connection commits behind the master's back
    assert master.refresh() is True
    assert "east" in master.licence.sites
    assert len(tops) == 2
    assert master.refresh() is False
    assert len(tops) == 2
    outcome = master.execute([AcquireSeat("east", "v1", "PRED")])[0]
    assert isinstance(outcome, Grant) and outcome.seat == 21
    assert master.verify().ok


def test_a_snapshot_through_the_pool_costs_one_read_of_the_top_and_no_reload(
        master: LedgerApp, monkeypatch: pytest.MonkeyPatch) -> None:
    tops = counting_tops(monkeypatch, master)
    master.refresh()
    master.take_snapshot()  # committed on a pooled connection, not the commit connection
    assert master.refresh() is False  # checked: the top still matches the seal
    assert master.refresh() is False
    assert len(tops) == 2


def test_a_commit_from_another_process_is_seen(master: LedgerApp, keys: dict[str, Any],
                                               tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tops = counting_tops(monkeypatch, master)
    master.refresh()
    (tmp_path / "at-rest.key").write_bytes(keys["key"])
    (tmp_path / "signing.key").write_bytes(keys["signing_key"].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    script = textwrap.dedent(f"""
        from pathlib import Path
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from ledger import LedgerApp
        root = Path({str(tmp_path)!r})
        signing = load_pem_private_key((root / "signing.key").read_bytes(), None)
        with LedgerApp(f"sqlite:///{{root}}/ledger.db",
                       key=(root / "at-rest.key").read_bytes(), signing_key=signing,
                       checkpoint_file=root / "latest.checkpoint") as app:
            app.enrol_site("west")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60,
                   preexec_fn=die_with_parent)
    assert master.refresh() is True
    assert "west" in master.licence.sites
    assert len(tops) == 2
    outcome = master.execute([AcquireSeat("west", "w1", "PRED")])[0]
    assert isinstance(outcome, Grant)
    assert master.verify().ok
