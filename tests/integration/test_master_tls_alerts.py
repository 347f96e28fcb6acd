"""What a refused TLS client sees from a running master: the TLS alert that says why, so a
site's operator can tell a wrong CA (or an expired certificate) from a revoked one.

Real sockets on 127.0.0.1, a real data directory and master (see test_wire.World).
"""

from __future__ import annotations

import datetime as dt
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from seatledger.config.ca import load_ca
from tests.integration.test_wire import World
from transport import pki
from transport.tls import client_context


@pytest.fixture
async def world(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[World]:
    w = World(tmp_path / "master")
    w.enrol("north", PRED=10)
    await w.start_master(nursery)
    yield w
    w.stop_master()
    w.app.close()


async def _refusal(world: World, context: ssl.SSLContext) -> BaseException:
    """Dial the master with ``context``; the error behind the broken stream the client gets.
    (In TLS 1.3 the client's handshake completes first: the refusal arrives on its first
    read.)"""
    tcp = await trio.open_tcp_stream("127.0.0.1", world.port)
    stream: trio.SSLStream[Any] = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
    try:
        with trio.fail_after(10):
            with pytest.raises(trio.BrokenResourceError) as broken:
                await stream.do_handshake()
                await stream.receive_some()
    finally:
        await trio.aclose_forcefully(stream)
    assert broken.value.__cause__ is not None
    return broken.value.__cause__


def _context(world: World, issued: pki.CertifiedKey) -> ssl.SSLContext:
    ca = world.bundle("north").ca_pem.encode()
    return client_context(ca, issued.cert_pem, issued.key_pem)


async def test_a_certificate_from_another_ca_gets_the_unknown_ca_alert(world: World) -> None:
    foreign = pki.issue_site_certificate(pki.create_ca("someone else's CA"), "north")
    cause = await _refusal(world, _context(world, foreign))
    assert isinstance(cause, ssl.SSLError)
    assert cause.reason == "TLSV1_ALERT_UNKNOWN_CA"
    assert "unknown ca" in str(cause)


async def test_an_expired_certificate_gets_the_certificate_expired_alert(world: World) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = pki.issue_site_certificate(
        _world_ca(world), "north", not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1))
    cause = await _refusal(world, _context(world, expired))
    assert isinstance(cause, ssl.SSLError)
    assert cause.reason == "SSLV3_ALERT_CERTIFICATE_EXPIRED"


async def test_a_client_without_a_certificate_gets_the_certificate_required_alert(
        world: World) -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(cadata=world.bundle("north").ca_pem)
    cause = await _refusal(world, anonymous)
    assert isinstance(cause, ssl.SSLError)
    assert cause.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"


async def test_a_site_revoked_in_the_ledger_only_is_still_told_apart_from_a_wrong_ca(
        world: World) -> None:
    # Revoked in the ledger but not in the CA's revocation list (`site revoke` writes both;
    # see test_revocation_alert.py for the "certificate revoked" alert): OpenSSL accepts the
    # chain, the handshake completes and there is no alert to send (transport.tls, "Alerts").
    # The stream ends without one, which an operator reads as "refused", not "wrong CA".
    world.app.revoke_site("north")
    b = world.bundle("north")
    revoked = client_context(b.ca_pem.encode(), b.cert_pem.encode(), b.key_pem.encode())
    cause = await _refusal(world, revoked)
    assert isinstance(cause, ssl.SSLEOFError)
    assert "alert" not in str(cause)


def _world_ca(world: World) -> pki.CertifiedKey:
    return load_ca(world.config.layout.ca_dir)
