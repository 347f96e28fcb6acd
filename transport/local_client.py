"""The blocking client of a local control socket (:mod:`transport.local_socket`): one JSON
request line, one JSON answer line.

Standard library only, so that a command-line tool asking a running slave or master
(``seatledger seat acquire`` per agent log-on) starts without loading trio.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class StaleSocketError(OSError):
    """Nothing answers at the socket's path (its server was killed)."""


def receive_line(sock: socket.socket) -> bytes:
    """Bytes up to and including a line break, or what came before the peer closed."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def request(path: Path, payload: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """Send one request and wait for its answer (blocking; for command-line tools).

    Raises:
        FileNotFoundError: nothing serves at ``path``.
        StaleSocketError: the socket is there but its server is gone.
        OSError: any other failure to reach it, or a timeout.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except ConnectionRefusedError:
            raise StaleSocketError(111, "nothing answers (a stale socket)", str(path)) from None
        s.sendall(json.dumps(payload).encode() + b"\n")
        data = receive_line(s)
    if not data:
        raise OSError(104, "the server closed the connection without answering", str(path))
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise OSError(71, "the server's answer is not a JSON object", str(path))
    return answer


__all__ = ["StaleSocketError", "request"]
