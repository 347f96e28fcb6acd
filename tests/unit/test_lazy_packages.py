"""The packages whose names are loaded on first use (lazy_loader, names in ``__init__.pyi``):
every name the stub lists resolves to its submodule's object, and a master that is not asked
for the dashboard, the metrics or an export loads none of their libraries. (What that saves
in memory is measured by ``benchmarks/wire.py``, phase ``rss``.)"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAZY = ["projections", "exporters", "exporters.sinks", "seatledger.web"]


def stub_names(package: str) -> dict[str, str]:
    """Each name the package's ``__init__.pyi`` imports, and the submodule it comes from."""
    stub = ROOT / package.replace(".", "/") / "__init__.pyi"
    names = {}
    for node in ast.parse(stub.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            assert node.level == 1 and node.module, ast.unparse(node)
            for alias in node.names:
                names[alias.asname or alias.name] = f"{package}.{node.module}"
    return names


@pytest.mark.parametrize("package", LAZY)
def test_every_name_of_the_stub_is_its_submodule_s_object(package: str) -> None:
    module = importlib.import_module(package)
    names = stub_names(package)
    assert sorted(module.__all__) == sorted(names)
    for name, source in names.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), name), name


@pytest.mark.parametrize("package", LAZY)
def test_an_unknown_name_is_an_attribute_error(package: str) -> None:
    module = importlib.import_module(package)
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def loaded_by(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


NOT_FOR_A_BARE_MASTER = ["paramiko", "hypercorn", "h2", "prometheus_client",
                         "starlette.applications", "sqlalchemy", "projections.engine",
                         "exporters.sinks.sftp", "exporters.sinks.ftp"]


def test_the_master_s_modules_load_no_web_server_sqlalchemy_or_sftp_client() -> None:
    modules = loaded_by("import seatledger.daemons.master, seatledger.daemons.ledger_writer")
    assert "seatledger.daemons.master" in modules
    assert "projections.feed" in modules  # what the master feeds its read models with
    assert [m for m in NOT_FOR_A_BARE_MASTER if m in modules] == []


def test_a_name_loads_its_submodule_when_first_used() -> None:
    modules = loaded_by("import exporters.sinks\nexporters.sinks.SftpSink")
    assert {"exporters.sinks.sftp", "paramiko"} <= modules
    assert "exporters.replay" not in modules
