"""The rules of the dashboard's and metrics' listeners, without sockets: which addresses
need HTTPS and a token, and the bearer check (401 without, 403 wrong, through when right)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from seatledger.config.settings import ConfigError, http_listener
from seatledger.web.guard import BearerGuard, read_token


def listener(table: dict[str, Any], tmp_path: Path) -> Any:
    return http_listener({"web": table}, "web", "127.0.0.1:7680", tmp_path)


def test_no_table_serves_nothing_and_an_empty_one_binds_localhost(tmp_path: Path) -> None:
    assert http_listener({}, "web", "127.0.0.1:7680", tmp_path) is None
    web = listener({}, tmp_path)
    assert (web.host, web.port, web.tls, web.local) == ("127.0.0.1", 7680, False, True)


@pytest.mark.parametrize("table", [
    {"listen": "127.0.0.2:7680"},
    {"listen": "0.0.0.0:7680", "tls": True},
    {"listen": "[2001:db8::1]:7680", "token_file": "t"},
])
def test_beyond_localhost_tls_and_a_token_are_required(tmp_path: Path,
                                                        table: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="needs tls = true and a token_file"):
        listener(table, tmp_path)


def test_beyond_localhost_with_tls_and_a_token_is_accepted(tmp_path: Path) -> None:
    web = listener({"listen": "[::]:443", "tls": True, "token_file": "web.token"}, tmp_path)
    assert (web.host, web.port, web.local) == ("::", 443, False)
    assert web.token_file == tmp_path / "web.token"


@pytest.mark.parametrize("table", [{"listen": "nowhere"}, {"listen": 7680},
                                   {"tls": "yes"}, {"cert_file": "c.pem"}])
def test_wrong_values_are_refused(tmp_path: Path, table: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        listener(table, tmp_path)


def test_a_token_file_must_be_private_and_not_empty(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="empty"):
        read_token(path)
    path.write_text("abc\n")
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        read_token(path)
    path.chmod(0o600)
    assert read_token(path) == b"abc"
    with pytest.raises(ConfigError, match="token file"):
        read_token(tmp_path / "missing")


async def ask(headers: list[tuple[bytes, bytes]]) -> tuple[int, bool]:
    """(status, whether the app behind the guard ran) for one request."""
    reached = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"data"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "headers": headers, "path": "/api/status"}
    await BearerGuard(app, b"right")(scope, receive, send)
    if not reached:  # refused: the answer says why and carries nothing of the app's
        assert sent[1]["body"] in (b"wrong token\n",
                                   b"a login is required (Authorization: Bearer TOKEN)\n")
    return sent[0]["status"], bool(reached)


async def test_the_guard_answers_401_403_or_lets_through() -> None:
    assert await ask([]) == (401, False)
    assert await ask([(b"authorization", b"Bearer wrong")]) == (403, False)
    assert await ask([(b"authorization", b"Basic right")]) == (403, False)
    assert await ask([(b"authorization", b"Bearer righ")]) == (403, False)
    assert await ask([(b"authorization", b"bearer right")]) == (200, True)
    assert await ask([(b"authorization", b"Bearer right")]) == (200, True)
    # A browser's login: the token as the password of HTTP Basic, any user name.
    basic = b"Basic " + base64.b64encode(b"operator:right")
    assert await ask([(b"authorization", basic)]) == (200, True)
    wrong = b"Basic " + base64.b64encode(b"operator:wrong")
    assert await ask([(b"authorization", wrong)]) == (403, False)
    assert await ask([(b"authorization", b"Basic !!not-base64")]) == (403, False)
