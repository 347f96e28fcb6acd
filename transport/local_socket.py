"""A local control socket: one JSON object per line each way, over a Unix socket that only
its owner may use (mode 0600, and the peer's uid checked with ``SO_PEERCRED``).

Used by the slave's dialler socket and by the master's admin socket. The server side runs
on trio; :func:`request` is the blocking client a command-line tool uses. That client lives
in :mod:`transport.local_client` (standard library only, for a fast start) and is re-exported
here.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from .local_client import StaleSocketError, request

MAX_LINE = 64 * 1024

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def peer_uid(sock: socket.socket | trio.socket.SocketType) -> int:
    """The uid of the process at the other end of a connected Unix socket (Linux)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True
    return True


async def serve_json_lines(path: Path, handle: Handler, *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``handle`` at ``path`` until cancelled. A stale socket left by a killed server is
    replaced; a live one is not (raises OSError EADDRINUSE)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists() or path.is_symlink():
        if _alive(path):
            raise OSError(98, "another process is serving this socket", str(path))
        path.unlink()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is created 0600: nobody else may even connect
    try:
        await sock.bind(str(path))
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(64)
    listener = trio.SocketListener(sock)
    task_status.started()
    try:
        await trio.serve_listeners(functools.partial(_client, handle), [listener])
    finally:
        path.unlink(missing_ok=True)


async def _client(handle: Handler, stream: trio.SocketStream) -> None:
    async with stream:
        if peer_uid(stream.socket) not in (os.getuid(), 0):
            await _send(stream, {"ok": False, "reason": "forbidden",
                                 "detail": "this socket serves its owner only"})
            return
        buffer = b""
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            buffer += data
            if len(buffer) > MAX_LINE:
                await _send(stream, {"ok": False, "reason": "bad_request",
                                     "detail": "request too long"})
                return
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("not a JSON object")
                except ValueError as e:
                    answer: dict[str, Any] = {"ok": False, "reason": "bad_request",
                                              "detail": f"malformed request: {e}"}
                else:
                    answer = await handle(request)
                if not await _send(stream, answer):
                    return


async def _send(stream: trio.SocketStream, obj: dict[str, Any]) -> bool:
    try:
        await stream.send_all(json.dumps(obj).encode() + b"\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return False
    return True


__all__ = ["Handler", "StaleSocketError", "peer_uid", "request", "serve_json_lines"]
