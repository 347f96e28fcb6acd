"""The slave's local socket: how scripts and non-Python diallers use a running slave.

A Unix socket in the slave's state directory; one JSON object per line each way.
Requests: ``{"op": "acquire", "user": U, "class": C, "tenant": T, "campaign": K}``,
``{"op": "release", "user": U}``, ``{"op": "list"}``. Answers carry ``"ok": true`` and the
result, or ``"ok": false`` with ``"reason"`` and ``"detail"``.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import trio

from seatledger.slave.connector import SeatRefusedError, SlaveConnector

MAX_LINE = 64 * 1024


async def serve_socket(slave: SlaveConnector, path: Path, *,
                       task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(64)
    listener = trio.SocketListener(sock)
    task_status.started()
    try:
        await trio.serve_listeners(lambda stream: _client(slave, stream), [listener])
    finally:
        path.unlink(missing_ok=True)


async def _client(slave: SlaveConnector, stream: trio.SocketStream) -> None:
    buffer = b""
    async with stream:
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            buffer += data
            if len(buffer) > MAX_LINE:
                await stream.send_all(_line({"ok": False, "reason": "bad_request",
                                             "detail": "request too long"}))
                return
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                answer = await handle(slave, line)
                try:
                    await stream.send_all(_line(answer))
                except trio.BrokenResourceError:
                    return


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


async def handle(slave: SlaveConnector, line: bytes) -> dict[str, Any]:
    try:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise ValueError("not an object")
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


def request(path: Path, payload: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Send one request to a running slave (blocking; for the CLI). Raises OSError."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(_line(payload))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data)
    return answer
