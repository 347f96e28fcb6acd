"""The login a listener off 127.0.0.1 requires: ``Authorization: Bearer <token>``, the token
kept in a file (0600) the configuration names; or, for a browser (which asks for it itself
when told 401), HTTP Basic with the token as the password, under any user name.
Missing: 401; wrong: 403; never data."""

from __future__ import annotations

import base64
import binascii
import hmac
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from seatledger.config.keys import read_private


def read_token(path: Path) -> bytes:
    """The token in ``path``, which only its owner may read.

    Raises:
        ConfigError: missing, empty, or readable by others.
    """
    return read_private(path, "token file")


class BearerGuard:
    """An ASGI middleware letting through only requests that carry the token."""

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        self.app = app
        self.expected = b"bearer " + token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if given is None:
            await _refuse(send, 401, b"a login is required (Authorization: Bearer TOKEN)\n")
            return
        if not self.admits(given):
            await _refuse(send, 403, b"wrong token\n")
            return
        await self.app(scope, receive, send)

    def admits(self, authorization: bytes) -> bool:
        scheme, _, rest = authorization.strip().partition(b" ")
        scheme, rest = scheme.lower(), rest.strip()
        if scheme == b"basic":
            try:
                _user, _, password = base64.b64decode(rest, validate=True).partition(b":")
            except binascii.Error:
                return False
            return hmac.compare_digest(b"bearer " + password, self.expected)
        return hmac.compare_digest(scheme + b" " + rest, self.expected)


async def _refuse(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain; charset=utf-8"),
               (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="seatledger"'))
        headers.append((b"www-authenticate", b'Basic realm="seatledger", charset="UTF-8"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
