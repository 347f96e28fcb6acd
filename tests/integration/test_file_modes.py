"""Files holding keys, the store or personal data are 0600 in 0700 directories."""

from __future__ import annotations

import stat
from pathlib import Path

from seatledger.cli.main import main
from tests.licensing import Vendor


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
            for p in [root, *root.rglob("*")] if not p.is_symlink()}


def test_the_data_directory_is_owner_only_after_everyday_commands(tmp_path: Path) -> None:
    root = tmp_path / "data"
    data = ["--data-dir", str(root)]
    vendor = Vendor(tmp_path / "vendor")
    vendor.init_master(root)
    vendor.install(root, "PRED=100")
    assert main(["site", "enrol", "north", *data]) == 0
    assert main(["status", *data]) == 0
    assert main(["projections", "rebuild", *data]) == 0
    assert main(["audit", "verify", *data]) == 0
    modes = _modes(root)
    assert "ledger.db" in modes and "bundles/north.bundle" in modes
    assert "ledger.views.db" in modes  # the read models' own file
    wrong = {name: oct(mode) for name, mode in modes.items()
             if mode != (0o700 if (root / name).is_dir() or name == "." else 0o600)}
    assert wrong == {}
    vendor_modes = _modes(tmp_path / "vendor")
    assert "keys/licence-signing.key" in vendor_modes and "vendor.db" in vendor_modes
    wrong = {name: oct(mode) for name, mode in vendor_modes.items()
             if mode != (0o700 if (tmp_path / "vendor" / name).is_dir() or name == "."
                         else 0o600)}
    assert wrong == {}
