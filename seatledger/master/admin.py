"""The master's admin socket: while a master runs it is the only writer of its store, so the
operator's commands (licence, sites) come to it here and are committed by its writer.

``run/admin.sock`` in the data directory, 0600, peer uid checked; one JSON object per line.
Requests name an ``op`` and its arguments; answers are ``{"ok": true, ...}`` or
``{"ok": false, "reason": ..., "detail": ...}``. The operations and their arguments are the
:class:`AdminOp` table below; :mod:`seatledger.services.operator` is the client.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from ledger import GracePolicy, LedgerApp
from ledger.domain.summaries import licence_summary, sites_summary
from seatledger.master.writer import OperatorCall, OperatorFailed
from transport.local_socket import serve_json_lines

Submit = Callable[[Any], Awaitable[Any]]


def _policy(raw: Any) -> GracePolicy | None:
    if raw is None:
        return None
    grace, rearm, ceiling = raw
    return GracePolicy(int(grace), int(rearm), None if ceiling is None else int(ceiling))


def _instant(raw: Any) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(str(raw))


def _issue(app: LedgerApp, a: dict[str, Any]) -> dict[str, Any]:
    lic = app.issue_licence(customer=str(a["customer"]), limits=dict(a["limits"]),
                            total_pred_acd=a.get("total_pred_acd"),
                            expires_at=_instant(a.get("expires_at")),
                            policy=_policy(a.get("policy")) or GracePolicy(),
                            cutoff_seconds=int(a["cutoff_seconds"]))
    return {"licence": licence_summary(lic)}


def _amend(app: LedgerApp, a: dict[str, Any]) -> dict[str, Any]:
    terms: dict[str, Any] = {}
    if "limits" in a:
        terms["limits"] = {str(c): int(n) for c, n in a["limits"].items()}
    if "total_pred_acd" in a:
        terms["total_pred_acd"] = a["total_pred_acd"]
    if "expires_at" in a:
        terms["expires_at"] = _instant(a["expires_at"])
    if "policy" in a:
        terms["policy"] = _policy(a["policy"])
    app.amend_licence(**terms)
    return {"licence": licence_summary(app.licence)}


def _enrol(app: LedgerApp, a: dict[str, Any]) -> dict[str, Any]:
    app.enrol_site(str(a["name"]), str(a["fingerprint"]),
                   {str(c): int(n) for c, n in (a.get("local_limits") or {}).items()})
    return {"sites": sites_summary(app.licence)}


def _revoke(app: LedgerApp, a: dict[str, Any]) -> dict[str, Any]:
    released = app.revoke_site(str(a["name"]))
    return {"released": len(released)}


OPERATIONS: dict[str, Callable[[LedgerApp, dict[str, Any]], dict[str, Any]]] = {
    "licence.issue": _issue,
    "licence.amend": _amend,
    "site.enrol": _enrol,
    "site.revoke": _revoke,
    # Reads go through the writer too: the aggregate changes only between its batches.
    "licence.show": lambda app, _: {"licence": licence_summary(app.licence)},
    "site.list": lambda app, _: {"sites": sites_summary(app.licence)},
}


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

        def run(ledger: LedgerApp) -> Any:
            try:
                return fn(ledger, args)
            except (KeyError, TypeError, ValueError) as e:
                return {"bad_request": f"malformed arguments for {op}: {e}"}

        outcome = await submit(OperatorCall(str(op), run))
        if isinstance(outcome, OperatorFailed):
            return _refusal(outcome.error)
        if "bad_request" in outcome:
            return {"ok": False, "reason": "bad_request", "detail": outcome["bad_request"]}
        return {"ok": True, **outcome}

    return handle


def _refusal(error: BaseException) -> dict[str, Any]:
    return {"ok": False, "reason": type(error).__name__, "detail": str(error)}


async def serve_admin(path: Path, submit: Submit,
                      describe: Callable[[], dict[str, Any]], *,
                      task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the admin socket at ``path`` until cancelled."""
    await serve_json_lines(path, handler(submit, describe), task_status=task_status)


def describe_process() -> dict[str, Any]:
    return {"pid": os.getpid(), "role": "active"}


__all__ = ["OPERATIONS", "describe_process", "handler", "serve_admin"]
