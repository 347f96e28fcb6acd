"""The command line starts on what the command needs: the seat commands a dialler runs per
agent log-on load neither trio nor the ledger, and ``--help`` loads no command group. (How
fast that is lives in ``benchmarks/cli.py``, not here.)"""

from __future__ import annotations

import argparse
import importlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from seatledger.cli import seat
from transport.local_client import receive_line

cli_main = importlib.import_module("seatledger.cli.main")  # the package's ``main`` is the function

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("trio", "ledger", "exporters", "projections", "cryptography", "sqlalchemy",
         "eventsourcing", "attrs", "msgspec")


def modules_after(argv: list[str]) -> tuple[int, set[str], str]:
    """Run ``main(argv)`` in a fresh interpreter: its exit status, the modules it imported,
    and what it printed."""
    script = (
        "import json, sys\n"
        "from seatledger.cli.main import main\n"
        "try:\n"
        f"    code = main({argv!r})\n"
        "except SystemExit as e:\n"
        "    code = e.code or 0\n"
        "sys.stdout.flush()\n"
        "print('\\nMODULES ' + json.dumps({'code': code, 'modules': sorted(sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)  # this checkout's code, not another install's
    printed, _, tail = done.stdout.rpartition("\nMODULES ")
    report = json.loads(tail)
    return int(report["code"]), set(report["modules"]), printed + done.stderr


def loaded(modules: set[str], package: str) -> bool:
    return any(m == package or m.startswith(package + ".") for m in modules)


@pytest.fixture
def fake_slave(tmp_path: Path) -> Iterator[Path]:
    """A slave's local socket answering every request with a fixed answer, from a thread."""
    state = tmp_path / "slave"
    state.mkdir()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(state / "slave.sock"))
    server.listen(4)

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        if request["op"] == "list":
            return {"ok": True, "state": "online", "master": "m:7443", "seats": [
                {"user": "ann", "class": "PRED", "tenant": "t1", "campaign": "c1",
                 "seat": "s-1", "status": "normal"}]}
        return {"ok": True, "user": request["user"], "class": request["class"],
                "seat": "s-2", "status": "grace", "deadline": "2030-01-01T00:00:00+00:00"}

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                data = receive_line(conn)
                conn.sendall(json.dumps(answer(json.loads(data))).encode() + b"\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield state
    server.shutdown(socket.SHUT_RDWR)
    server.close()
    thread.join(5)


@pytest.mark.parametrize("argv", [
    ["seat", "list"],
    ["seat", "acquire", "--user", "u", "--class", "PRED"],
    ["seat", "release", "--user", "u"],
])
def test_seat_commands_without_a_slave_load_neither_trio_nor_the_ledger(
        argv: list[str], tmp_path: Path) -> None:
    code, modules, printed = modules_after([*argv, "--state-dir", str(tmp_path)])
    assert code == 1 and "no slave is running" in printed
    assert [p for p in HEAVY if loaded(modules, p)] == []


def test_seat_commands_with_a_slave_load_neither_trio_nor_the_ledger(fake_slave: Path) -> None:
    code, modules, printed = modules_after(["seat", "list", "--state-dir", str(fake_slave)])
    assert code == 0 and "slave online (master m:7443)" in printed and "ann" in printed
    assert [p for p in HEAVY if loaded(modules, p)] == []
    code, modules, printed = modules_after(
        ["--json", "seat", "acquire", "--user", "bob", "--class", "ACD", "--state-dir",
         str(fake_slave)])
    assert code == 0 and json.loads(printed)["seat"] == "s-2"
    assert [p for p in HEAVY if loaded(modules, p)] == []


def test_seat_list_prints_the_slave_s_seats_as_a_table(
        fake_slave: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["seat", "list", "--state-dir", str(fake_slave)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "slave online (master m:7443)",
        "user  class  tenant  campaign  seat  status",
        "----  -----  ------  --------  ----  ------",
        "ann   PRED   t1      c1        s-1   normal",
    ]


def test_help_loads_no_command_group() -> None:
    code, modules, printed = modules_after(["--help"])
    assert code == 0 and "usage: seatledger" in printed
    assert [p for p in HEAVY if loaded(modules, p)] == []
    groups = {m for m in modules if m.startswith("seatledger.cli.")}
    assert groups == {"seatledger.cli.main", "seatledger.cli.exits"}


def test_a_group_s_help_loads_that_group_only() -> None:
    code, modules, printed = modules_after(["status", "--help"])
    assert code == 0 and "usage: seatledger status" in printed
    assert "seatledger.cli.reports" in modules
    assert not {"seatledger.cli.vendor", "seatledger.cli.export", "seatledger.cli.seat",
                "seatledger.cli.daemons", "seatledger.cli.audit"} & modules
    code, modules, printed = modules_after(["seat", "--help"])
    assert code == 0 and "acquire" in printed
    assert [p for p in HEAVY if loaded(modules, p)] == []


# What a command's own --help must not import: the ledger, the store's and the wire's
# libraries (its handlers import them when they run).
HEAVY_FOR_HELP = ("trio", "ledger", "exporters", "projections", "cryptography", "sqlalchemy",
                  "eventsourcing", "psycopg", "paramiko", "hypercorn")


def _commands() -> list[str]:
    return [name for group in cli_main._GROUPS for name, _ in group.commands]


@pytest.mark.parametrize("command", _commands())
def test_a_command_s_help_imports_none_of_what_its_handlers_need(command: str) -> None:
    """``seatledger COMMAND --help`` builds the command's parser only: quick to answer."""
    code, modules, printed = modules_after([command, "--help"])
    assert code == 0 and f"usage: seatledger {command}" in printed, printed
    assert [p for p in HEAVY_FOR_HELP if loaded(modules, p)] == []


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_help_lists_every_command_as_the_full_parser_does(
        capsys: pytest.CaptureFixture[str]) -> None:
    full = cli_main.build_parser()
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["--help"])
    assert exit_.value.code == 0
    listed = capsys.readouterr().out
    assert listed == full.format_help()
    for name in subparsers(full):
        assert f"\n    {name}" in listed, name


@pytest.mark.parametrize("command", list(subparsers(cli_main.build_parser())))
def test_each_command_parses_as_in_the_full_parser(command: str) -> None:
    full = subparsers(cli_main.build_parser())[command]
    alone = subparsers(cli_main.build_parser(command))[command]

    def pages(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, str]]:
        yield path, parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    yield from pages(child, f"{path} {name}")

    assert dict(pages(alone, command)) == dict(pages(full, command))


def test_the_errors_main_recognises_are_defined_where_it_looks() -> None:
    for module_name, class_name in cli_main._USAGE_ERRORS + cli_main._FAILURES:
        cls = getattr(importlib.import_module(module_name), class_name)
        assert issubclass(cls, Exception) and cls.__module__ == module_name, class_name


def test_the_seat_module_s_copies_match_the_originals() -> None:
    from ledger import AGENT_CLASSES

    assert seat.AGENT_CLASSES == AGENT_CLASSES


def test_the_blocking_client_is_still_importable_from_local_socket() -> None:
    from transport import local_client, local_socket

    assert local_socket.request is local_client.request
    assert local_socket.StaleSocketError is local_client.StaleSocketError
