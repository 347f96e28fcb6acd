"""Files holding keys, the store or personal data are 0600 in 0700 directories."""

from __future__ import annotations

import stat
from pathlib import Path

from seatledger.cli.main import main


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in [root, *root.rglob("*")] if not p.is_symlink()}


def test_the_data_directory_is_owner_only_after_everyday_commands(tmp_path: Path) -> None:
    root = tmp_path / "data"
    data = ["--data-dir", str(root)]
    assert main(["init", *data]) == 0
    assert main(["licence", "issue", "--customer", "Acme", "--seats", "PRED=100", *data]) == 0
    assert main(["site", "enrol", "north", *data]) == 0
    assert main(["status", *data]) == 0
    assert main(["projections", "rebuild", *data]) == 0
    assert main(["audit", "verify", *data]) == 0
    modes = _modes(root)
    assert "ledger.db" in modes and "bundles/north.bundle" in modes
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (root / name).is_dir() or name == "." else 0o600)}
    assert wrong == {}
