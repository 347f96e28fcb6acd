"""The master's admin socket: while a master runs it is the only writer of its store, so the
operator's commands (licence, sites) come to it here and are committed by its writer.

``run/admin.sock`` in the data directory, 0600, peer uid checked; one JSON object per line.
Requests name an ``op`` and its arguments; answers are ``{"ok": true, ...}`` or
``{"ok": false, "reason": ..., "detail": ...}``. The operations and their arguments are the
:class:`AdminOp` table below; :mod:`seatledger.services.operator` is the client.

A standby master (another master is active on the same PostgreSQL ledger) serves the socket
too, through :class:`AdminRoles`: ``ping`` answers role ``standby``, and every operation is
refused (reason ``standby``) with one line naming the active master.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from ledger import LedgerApp, LicenceError
from ledger.domain.summaries import licence_summary, seat_summary, seats_summary, sites_summary
from seatledger.config.licence_file import open_licence
from seatledger.master.writer import OperatorCall, OperatorFailed
from transport.local_socket import serve_json_lines

Submit = Callable[[Any], Awaitable[Any]]
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
STANDBY = "standby"


def _install(app: LedgerApp, a: dict[str, Any]) -> dict[str, Any]:
    """Verify and install a licence file, here in the writer; a refusal is recorded
    (LicenceRefused: the vendor sees edited or self-made licences tried) and then raised."""
    data = base64.b64decode(str(a["file_b64"]), validate=True)
    try:
        signed = open_licence(data, str(a["vendor_key"]))
        installed = app.install_licence(signed.terms, licence_file=signed.text,
                                        sha256=signed.sha256, issuer=signed.issuer)
    except LicenceError as e:
        app.refuse_licence(sha256=hashlib.sha256(data).hexdigest(),
                           reason=_refusal_reason(e), detail=str(e))
        raise
    return {"installed": installed, "licence": licence_summary(app.licence, app.now())}


def _refusal_reason(error: LicenceError) -> str:
    """A stable code for a refused licence: the error's class, in snake case."""
    name = type(error).__name__.removesuffix("Error").removeprefix("Licence") or "Licence"
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _enrol(app: LedgerApp, a: dict[str, Any]) -> dict[str, Any]:
    app.enrol_site(str(a["name"]), str(a["fingerprint"]),
                   {str(c): int(n) for c, n in (a.get("local_limits") or {}).items()})
    return {"sites": sites_summary(app.licence)}


def _revoke(app: LedgerApp, a: dict[str, Any]) -> dict[str, Any]:
    released = app.revoke_site(str(a["name"]))
    return {"released": len(released)}


def _seats(app: LedgerApp, a: dict[str, Any]) -> dict[str, Any]:
    return seats_summary(app.licence, str(a["name"]))


class SeatsReleased(dict[str, Any]):
    """The answer of ``site.release`` (``site``, and the seats ``released``, as
    :func:`~ledger.domain.summaries.seat_summary` shows them). A type of its own so that
    the master, after the batch that committed it, finds it among the batch's outcomes and
    tells the site (:meth:`seatledger.master.server.Master`'s after-batch hook)."""

    @property
    def site(self) -> str:
        return str(self["site"])

    @property
    def users(self) -> list[str]:
        return [str(seat["user"]) for seat in self["released"]]


def _release(app: LedgerApp, a: dict[str, Any]) -> dict[str, Any]:
    """Release one user's seat (``user``) or every seat (``all: true``) at site ``name``,
    reason ``operator``, in one commit."""
    name = str(a["name"])
    if ("user" in a) == bool(a.get("all")):
        raise ValueError("give either user or all: true")
    users = None if a.get("all") else [str(a["user"])]
    site = app.licence.sites.get(name)
    held = {u: seat_summary(u, seat) for u, seat in site.seats.items()} if site else {}
    released = app.release_seats(name, users)
    return SeatsReleased(site=name, released=[held[r.user] for r in released])


OPERATIONS: dict[str, Callable[[LedgerApp, dict[str, Any]], dict[str, Any]]] = {
    "licence.install": _install,
    "site.enrol": _enrol,
    "site.revoke": _revoke,
    "site.release": _release,
    # Reads go through the writer too: the aggregate changes only between its batches.
    "licence.show": lambda app, _: {"licence": licence_summary(app.licence, app.now())},
    "site.list": lambda app, _: {"sites": sites_summary(app.licence)},
    "site.seats": _seats,
}


def run_operation(app: LedgerApp, op: str, args: dict[str, Any]) -> Any:
    """Run one admin operation against the ledger (in the writer, or the writer process);
    malformed arguments give ``{"bad_request": ...}``. Raises LedgerError."""
    try:
        return OPERATIONS[op](app, args)
    except (KeyError, TypeError, ValueError) as e:
        return {"bad_request": f"malformed arguments for {op}: {e}"}


def handler(submit: Submit,
            describe: Callable[[], dict[str, Any]]) -> Callable[[dict[str, Any]],
                                                              Awaitable[dict[str, Any]]]:
    """The admin socket's request handler: every operation runs in the writer (``submit``)."""
    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        args = request.get("args") or {}
        if op == "ping":
            return {"ok": True, **describe()}
        fn = OPERATIONS.get(str(op))
        if fn is None or not isinstance(args, dict):
            return {"ok": False, "reason": "bad_request", "detail": f"unknown op {op!r}"}
        name = str(op)
        outcome = await submit(OperatorCall(
            name, lambda ledger: run_operation(ledger, name, args), args))
        if isinstance(outcome, OperatorFailed):
            return _refusal(outcome.error)
        if "bad_request" in outcome:
            return {"ok": False, "reason": "bad_request", "detail": outcome["bad_request"]}
        return {"ok": True, **outcome}

    return handle


def standby_handler(active: Callable[[], Awaitable[str]]) -> Handler:
    """A standby's request handler: ``ping`` says so; operations are refused, naming the
    active master (``active()`` describes it: ``HOLDER since TIME (term N)``)."""
    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        who = await active()
        if request.get("op") == "ping":
            return {"ok": True, **describe_process(STANDBY), "active": who}
        return {"ok": False, "reason": STANDBY,
                "detail": f"this master is a standby: the active master is {who}; "
                          "run operator commands on its host"}

    return handle


class AdminRoles:
    """The admin socket of a master that may be standby or active in turn (a PostgreSQL
    ledger shared with other masters): requests go to whichever role it has now."""

    def __init__(self, active: Callable[[], Awaitable[str]]):
        self._standby = standby_handler(active)
        self._handle = self._standby

    def become_active(self, submit: Submit) -> None:
        self._handle = handler(submit, describe_process)

    def become_standby(self) -> None:
        self._handle = self._standby

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._handle(request)

    async def serve(self, path: Path, *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the admin socket at ``path`` until cancelled."""
        await serve_json_lines(path, self.handle, task_status=task_status)


def _refusal(error: BaseException) -> dict[str, Any]:
    return {"ok": False, "reason": type(error).__name__, "detail": str(error)}


async def serve_admin(path: Path, submit: Submit,
                      describe: Callable[[], dict[str, Any]], *,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the admin socket at ``path`` until cancelled."""
    await serve_json_lines(path, handler(submit, describe), task_status=task_status)


def describe_process(role: str = "active") -> dict[str, Any]:
    return {"pid": os.getpid(), "role": role}


__all__ = ["OPERATIONS", "STANDBY", "run_operation", "AdminRoles", "SeatsReleased", "describe_process", "handler",
           "serve_admin", "standby_handler"]
