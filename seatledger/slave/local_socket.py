"""The slave's local socket: how scripts and non-Python diallers use a running slave.

A Unix socket in the slave's state directory; one JSON object per line each way.
Requests: ``{"op": "acquire", "user": U, "class": C, "tenant": T, "campaign": K}``,
``{"op": "release", "user": U}``, ``{"op": "list"}``. Answers carry ``"ok": true`` and the
result, or ``"ok": false`` with ``"reason"`` and ``"detail"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from seatledger.slave.connector import SeatRefusedError, SlaveConnector
from transport.local_socket import serve_json_lines


async def serve_socket(slave: SlaveConnector, path: Path, *,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """The dialler's socket: acquire, release and list seats (see :func:`handle`)."""
    async def answer(request: dict[str, Any]) -> dict[str, Any]:
        return await handle(slave, request)

    await serve_json_lines(path, answer, task_status=task_status)


async def handle(slave: SlaveConnector, request: dict[str, Any]) -> dict[str, Any]:
    try:
        op = request.get("op")
        if op == "acquire":
            seat = await slave.acquire(str(request["user"]), str(request["class"]),
                                       str(request.get("tenant", "")),
                                       str(request.get("campaign", "")))
            return {"ok": True, "user": seat.user, "class": seat.agent_class, "seat": seat.seat,
                    "status": seat.status,
                    "deadline": seat.deadline.isoformat() if seat.deadline else None}
        if op == "release":
            await slave.release(str(request["user"]))
            return {"ok": True, "user": request["user"]}
        if op == "list":
            return {"ok": True, "state": slave.state, "master": slave.connected_to,
                    "seats": [{"user": s.user, "class": s.agent_class, "tenant": s.tenant,
                               "campaign": s.campaign, "seat": s.seat, "status": s.status}
                              for s in slave.seats().values()]}
        return {"ok": False, "reason": "bad_request", "detail": f"unknown op {op!r}"}
    except SeatRefusedError as e:
        return {"ok": False, "reason": e.reason, "detail": e.detail}
    except (ValueError, KeyError, TypeError) as e:
        return {"ok": False, "reason": "bad_request", "detail": f"malformed request: {e}"}
