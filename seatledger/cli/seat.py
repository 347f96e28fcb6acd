"""``seatledger seat``: talk to a running slave through its local socket, as a dialler would.

A dialler runs these once per agent log-on, so they start on the standard library alone:
no ledger, no trio (``tests/integration/test_cli_startup.py`` checks it). That is why this
module keeps its own copy of the agent classes instead of importing :mod:`ledger`; the same
test pins the copy to the original.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from seatledger.cli import output
from seatledger.cli.common import (
    Add,
    add_common,
)
from seatledger.cli.exits import EXIT_OK
from seatledger.services.errors import Refused
from transport.local_client import StaleSocketError, request

AGENT_CLASSES: tuple[str, ...] = ("PRED", "ACD", "PBX", "VIR")  # == ledger.AGENT_CLASSES


def socket_path(args: argparse.Namespace) -> Path:
    if getattr(args, "socket", None):
        return Path(args.socket)
    return Path(args.state_dir).absolute() / "slave.sock"


def _ask_slave(args: argparse.Namespace, payload: dict[str, Any]) -> dict[str, Any]:
    path = socket_path(args)
    try:
        return request(path, payload)
    except FileNotFoundError:
        raise Refused(f"no slave is running at {path} (start 'seatledger slave')") from None
    except StaleSocketError:
        raise Refused(f"the slave at {path} is not running (its socket is stale; start "
                      "'seatledger slave')") from None
    except OSError as e:
        raise Refused(f"cannot reach the slave at {path}: {e.strerror or e}") from None


def cmd_seat_acquire(args: argparse.Namespace) -> int:
    answer = _ask_slave(args, {"op": "acquire", "user": args.user, "class": args.agent_class,
                               "tenant": args.tenant, "campaign": args.campaign})
    if not answer.get("ok"):
        if args.json:
            print(json.dumps(answer))
        raise Refused(f"refused: {answer.get('reason')}: {answer.get('detail', '')}".rstrip(": "))
    text = f"seat {answer['seat']} for {answer['user']} ({answer['class']}): {answer['status']}"
    if answer.get("deadline"):
        text += f", grace until {answer['deadline']}"
    output.say(args, answer, text)
    return EXIT_OK


def cmd_seat_release(args: argparse.Namespace) -> int:
    answer = _ask_slave(args, {"op": "release", "user": args.user})
    if not answer.get("ok"):
        if args.json:
            print(json.dumps(answer))
        raise Refused(f"refused: {answer.get('reason')}: {answer.get('detail', '')}".rstrip(": "))
    output.say(args, answer, f"released {args.user}")
    return EXIT_OK


def cmd_seat_list(args: argparse.Namespace) -> int:
    answer = _ask_slave(args, {"op": "list"})
    rows = [(s["user"], s["class"], s["tenant"], s["campaign"], s["seat"], s["status"])
            for s in answer["seats"]]
    output.say(args, answer, f"slave {answer['state']}"
         + (f" (master {answer['master']})" if answer.get("master") else "") + "\n"
         + output.table(("user", "class", "tenant", "campaign", "seat", "status"), rows))
    return EXIT_OK


def register(sub: Any, add: Add, common: argparse.ArgumentParser) -> None:
    """Add ``seat acquire|release|list``."""
    slave_help = "the slave's state directory (journal and socket; default ./seatledger-slave)"
    seat = sub.add_parser("seat", help="talk to a running slave, as a dialler would",
                          parents=[common])
    seat_sub = seat.add_subparsers(dest="action", metavar="ACTION")
    seat_sub.required = True
    seat_common = argparse.ArgumentParser(add_help=False)
    seat_common.add_argument("--state-dir", default="seatledger-slave", metavar="DIR",
                             help=slave_help)
    seat_common.add_argument("--socket", metavar="PATH")
    p = add(seat_sub, "acquire", cmd_seat_acquire, "log an agent on")
    add_common(p, seat_common)
    p.add_argument("--user", required=True)
    p.add_argument("--class", dest="agent_class", required=True, choices=AGENT_CLASSES)
    p.add_argument("--tenant", default="")
    p.add_argument("--campaign", default="")
    p = add(seat_sub, "release", cmd_seat_release, "log an agent off")
    add_common(p, seat_common)
    p.add_argument("--user", required=True)
    p = add(seat_sub, "list", cmd_seat_list, "the seats the slave holds, and its state")
    add_common(p, seat_common)
