"""The operator's commands (licence and sites), applied by whoever may write the store now.

While a master runs it is the store's only writer, so a command goes to it over its admin
socket and is committed in its batches; with no master running the command takes the data
directory's lock and writes the store itself. Either way the caller gets the same answers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from ledger import GracePolicy, LedgerApp, LedgerError
from seatledger.config.lock import DataDirBusyError, DataDirLock
from seatledger.config.settings import Config
from seatledger.config.store import open_ledger
from seatledger.master.admin import OPERATIONS
from seatledger.services.errors import Refused
from transport.local_socket import StaleSocketError, request


class OperatorError(LedgerError):
    """The running master refused an operator's command (its message is the master's)."""


class LedgerPort(Protocol):
    """What an operator can do to the ledger; each call returns JSON-ready summaries."""

    def call(self, op: str, **args: Any) -> dict[str, Any]: ...


def _policy(policy: GracePolicy | None) -> list[int | None] | None:
    if policy is None:
        return None
    return [policy.grace_seconds, policy.rearm_seconds, policy.ceiling_percent]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class DirectPort:
    """No master runs: this process holds the lock and writes the store itself."""

    def __init__(self, app: LedgerApp):
        self.app = app

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        return OPERATIONS[op](self.app, args)


class AdminPort:
    """A master runs: ask it over its admin socket."""

    def __init__(self, config: Config, holder: str):
        self.path = config.layout.admin_socket
        self.holder = holder

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        try:
            answer = request(self.path, {"op": op, "args": args})
        except (FileNotFoundError, StaleSocketError):
            raise Refused(f"{self.holder} holds the data directory but its admin socket "
                          f"{self.path} does not answer; try again when it has started") from None
        except OSError as e:
            raise Refused(f"cannot reach the master's admin socket {self.path}: "
                          f"{e.strerror or e}") from None
        if not answer.get("ok"):
            raise OperatorError(str(answer.get("detail") or answer.get("reason")))
        return answer


@contextmanager
def operator_port(config: Config) -> Iterator[LedgerPort]:
    """The way to the ledger for one operator command (see the module docstring)."""
    lock = DataDirLock(config.layout.lock, "operator command", directory=config.root)
    try:
        lock.acquire()
    except DataDirBusyError as e:
        yield AdminPort(config, e.holder)
        return
    try:
        with open_ledger(config) as app:
            yield DirectPort(app)
    finally:
        lock.release()


def issue_licence(port: LedgerPort, *, customer: str, limits: Mapping[str, int],
                  total_pred_acd: int | None, expires_at: datetime | None,
                  policy: GracePolicy, cutoff_seconds: int) -> dict[str, Any]:
    summary: dict[str, Any] = port.call("licence.issue", customer=customer, limits=dict(limits),
                     total_pred_acd=total_pred_acd, expires_at=_iso(expires_at),
                     policy=_policy(policy), cutoff_seconds=cutoff_seconds)["licence"]
    return summary


def amend_licence(port: LedgerPort, **terms: Any) -> dict[str, Any]:
    if "expires_at" in terms:
        terms["expires_at"] = _iso(terms["expires_at"])
    if "policy" in terms:
        terms["policy"] = _policy(terms["policy"])
    summary: dict[str, Any] = port.call("licence.amend", **terms)["licence"]
    return summary


def show_licence(port: LedgerPort) -> dict[str, Any]:
    summary: dict[str, Any] = port.call("licence.show")["licence"]
    return summary


def list_sites(port: LedgerPort) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = port.call("site.list")["sites"]
    return result


def revoke_site(port: LedgerPort, name: str) -> int:
    return int(port.call("site.revoke", name=name)["released"])


__all__ = ["AdminPort", "DirectPort", "LedgerPort", "OperatorError", "amend_licence",
           "issue_licence", "list_sites", "operator_port", "revoke_site", "show_licence"]
