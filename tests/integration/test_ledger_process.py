"""The master's side of its writer process (seatledger.master.ledger_process) against the
real child: batches in, outcomes and events out, the master's copy following."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger import AcquireSeat, Grant, ReleaseSeat, StoreError
from seatledger.bootstrap import ledger_writer_command
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.master.ledger_process import LedgerProcess, RemoteCall
from seatledger.master.writer import OperatorFailed
from tests.integration.web_world import deploy


async def test_batches_run_in_the_child_and_the_copy_follows(tmp_path: Path) -> None:
    world = deploy(tmp_path, "")
    config = load_config(world.root)
    copy = open_ledger(config)
    process = LedgerProcess(ledger_writer_command(config), copy)
    await process.start()
    try:
        outcomes = await process.execute([AcquireSeat("north", "u1", "PRED"),
                                          AcquireSeat("north", "u2", "ACD")])
        assert [type(o) for o in outcomes] == [Grant, Grant]
        assert set(copy.licence.sites["north"].seats) == {"u1", "u2"}
        await process.execute([ReleaseSeat("north", "u2")])
        assert set(copy.licence.sites["north"].seats) == {"u1"}
        listed = await process.execute([RemoteCall("site.list", {})])
        assert [s["site"] for s in listed[0]["sites"]] == ["north"]
        [refused] = await process.execute([RemoteCall("site.revoke", {"name": "nowhere"})])
        assert isinstance(refused, OperatorFailed) and "nowhere" in str(refused.error)
        with pytest.raises(StoreError, match="another process"):
            copy.revoke_site("north")  # the copy never writes
    finally:
        await process.aclose()
        copy.close()
    with open_ledger(config) as app:  # what the child committed, sealed at its close
        assert set(app.licence.sites["north"].seats) == {"u1"}
        assert app.verify().ok


async def test_a_child_that_cannot_open_the_ledger_is_one_line(tmp_path: Path) -> None:
    world = deploy(tmp_path, "")
    config = load_config(world.root)
    copy = open_ledger(config)
    try:
        (world.root / "keys" / "at-rest.key").rename(world.root / "keys" / "moved.key")
        process = LedgerProcess(ledger_writer_command(config), copy)
        with pytest.raises(StoreError) as refused:
            await process.start()
        assert "could not open the ledger" in str(refused.value)
        assert "\n" not in str(refused.value)
    finally:
        copy.close()
