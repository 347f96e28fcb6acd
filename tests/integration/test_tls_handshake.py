"""Mutual TLS between master and slave over real sockets on 127.0.0.1.

Each test runs one handshake through ``trio.serve_listeners`` and reports both sides: the
master's view (the site identity, or why the handshake broke) and the slave's (the greeting
the master sends after a good handshake, or the broken stream). The master's side is run
both with ``trio.SSLStream`` and with the stream the master serves with
(:class:`transport.tls_stream.TLSStream`): the contexts' checks hold for either.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading
from pathlib import Path

import attrs
import pytest
import trio

from transport import pki
from transport.pki import CertifiedKey, SiteIdentity
from transport.tls import (
    CertificateRevokedError,
    RevocationCheck,
    client_context,
    peer_identity,
    server_context,
)
from transport.tls_stream import TLSStream

NOW = dt.datetime.now(dt.UTC)

MasterStream = type[trio.SSLStream[trio.SocketStream]] | type[TLSStream]


@pytest.fixture(params=["trio.SSLStream", "TLSStream"])
def master_stream(request: pytest.FixtureRequest) -> MasterStream:
    """The stream class connect_once serves the master's side with."""
    return trio.SSLStream if request.param == "trio.SSLStream" else TLSStream


@attrs.frozen
class Credentials:
    """PEM files of one party."""

    cert: Path
    key: Path


@attrs.frozen
class Pki:
    """A private CA with a master and sites, and a foreign CA, written to a directory."""

    ca: Path
    master: Credentials
    paris: Credentials
    lyon: Credentials
    expired: Credentials
    foreign_site: Credentials
    foreign_master: Credentials
    paris_fingerprint: str


def _write(directory: Path, name: str, issued: CertifiedKey) -> Credentials:
    credentials = Credentials(directory / f"{name}.crt", directory / f"{name}.key")
    issued.write(credentials.cert, credentials.key)
    return credentials


@pytest.fixture(scope="module")
def pki_files(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = pki.create_ca("seatledger test CA")
    foreign = pki.create_ca("someone else's CA")
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    paris = pki.issue_site_certificate(ca, "paris")
    return Pki(
        ca=directory / "ca.crt",
        master=_write(directory, "master", pki.issue_master_certificate(ca)),
        paris=_write(directory, "paris", paris),
        lyon=_write(directory, "lyon", pki.issue_site_certificate(ca, "lyon")),
        expired=_write(
            directory,
            "expired",
            pki.issue_site_certificate(
                ca,
                "nantes",
                not_before=NOW - dt.timedelta(days=30),
                not_after=NOW - dt.timedelta(days=1),
            ),
        ),
        foreign_site=_write(directory, "foreign", pki.issue_site_certificate(foreign, "paris")),
        foreign_master=_write(directory, "foreign-master", pki.issue_master_certificate(foreign)),
        paris_fingerprint=paris.fingerprint,
    )


def master_context(
    pki_files: Pki, revoked: RevocationCheck = frozenset(), master: Credentials | None = None
) -> ssl.SSLContext:
    master = master or pki_files.master
    return server_context(pki_files.ca, master.cert, master.key, revoked=revoked)


def slave_context(pki_files: Pki, site: Credentials) -> ssl.SSLContext:
    return client_context(pki_files.ca, site.cert, site.key)


@attrs.frozen
class Outcome:
    """What each side saw of one connection attempt."""

    master: SiteIdentity | trio.BrokenResourceError
    slave: bytes | trio.BrokenResourceError


async def connect_once(
    master_stream: MasterStream,
    server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str = "127.0.0.1"
) -> Outcome:
    """Serve one connection on a fresh port and dial it once."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    master_saw: list[SiteIdentity | trio.BrokenResourceError] = []
    done = trio.Event()

    async def handle(stream: trio.SocketStream) -> None:
        tls = master_stream(stream, server, server_side=True)
        try:
            await tls.do_handshake()
            identity = peer_identity(tls)
            await tls.send_all(f"welcome {identity.name}".encode())
            master_saw.append(identity)
        except trio.BrokenResourceError as exc:
            master_saw.append(exc)
        finally:
            await tls.aclose()
            done.set()

    slave_saw: bytes | trio.BrokenResourceError
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        with trio.fail_after(10):
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            tls = trio.SSLStream(tcp, client, server_hostname=server_hostname)
            try:
                await tls.do_handshake()
                slave_saw = await tls.receive_some()
            except trio.BrokenResourceError as exc:
                slave_saw = exc
            finally:
                await trio.aclose_forcefully(tls)
            await done.wait()
        nursery.cancel_scope.cancel()
    return Outcome(master_saw[0], slave_saw)


def refusal(outcome: Outcome) -> BaseException:
    """The TLS error behind the master's refusal; the slave must not have been greeted."""
    assert isinstance(outcome.master, trio.BrokenResourceError), outcome
    assert isinstance(outcome.slave, trio.BrokenResourceError), outcome
    cause = outcome.master.__cause__
    assert isinstance(cause, ssl.SSLError), cause
    return cause


# --- the good case --------------------------------------------------------------------------


async def test_a_site_with_a_valid_certificate_is_identified_by_it(
    pki_files: Pki, master_stream: MasterStream
) -> None:
    outcome = await connect_once(
        master_stream, master_context(pki_files), slave_context(pki_files, pki_files.paris)
    )
    assert outcome.master == SiteIdentity("paris", pki_files.paris_fingerprint)
    assert outcome.slave == b"welcome paris"


async def test_the_connection_is_tls_1_3(pki_files: Pki) -> None:
    versions: list[str | None] = []
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def handle(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, master_context(pki_files), server_side=True)
        await tls.do_handshake()
        versions.append(tls.version())
        await tls.aclose()

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        with trio.fail_after(10):
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            tls = trio.SSLStream(
                tcp, slave_context(pki_files, pki_files.lyon), server_hostname="127.0.0.1"
            )
            await tls.do_handshake()
            versions.append(tls.version())
            await tls.receive_some()
            await tls.aclose()
        nursery.cancel_scope.cancel()
    assert versions == ["TLSv1.3", "TLSv1.3"]


# --- the master refuses ---------------------------------------------------------------------


async def test_a_slave_without_a_certificate_is_refused(
    pki_files: Pki, master_stream: MasterStream
) -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(pki_files.ca)
    cause = refusal(await connect_once(master_stream, master_context(pki_files), anonymous))
    assert cause.reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


async def test_a_certificate_from_another_ca_is_refused(
    pki_files: Pki, master_stream: MasterStream
) -> None:
    client = slave_context(pki_files, pki_files.foreign_site)
    cause = refusal(await connect_once(master_stream, master_context(pki_files), client))
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert "unable to get local issuer certificate" in cause.verify_message


async def test_an_expired_certificate_is_refused(
    pki_files: Pki, master_stream: MasterStream
) -> None:
    client = slave_context(pki_files, pki_files.expired)
    cause = refusal(await connect_once(master_stream, master_context(pki_files), client))
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert cause.verify_message == "certificate has expired"


async def test_a_revoked_site_is_refused_in_the_handshake(
    pki_files: Pki, master_stream: MasterStream
) -> None:
    server = master_context(pki_files, revoked={pki_files.paris_fingerprint})
    client = slave_context(pki_files, pki_files.paris)
    cause = refusal(await connect_once(master_stream, server, client))
    assert isinstance(cause, CertificateRevokedError)
    assert pki_files.paris_fingerprint in str(cause)


async def test_revocation_applies_to_the_next_connection_without_a_new_context(
    pki_files: Pki, master_stream: MasterStream
) -> None:
    revoked: set[str] = set()
    server = master_context(pki_files, revoked=revoked)
    client = slave_context(pki_files, pki_files.paris)
    assert isinstance((await connect_once(master_stream, server, client)).master, SiteIdentity)
    revoked.add(pki_files.paris_fingerprint)
    refused = refusal(await connect_once(master_stream, server, client))
    assert isinstance(refused, CertificateRevokedError)


async def test_revocation_may_be_a_predicate_and_spares_other_sites(
    pki_files: Pki, master_stream: MasterStream
) -> None:
    server = master_context(pki_files, revoked=lambda fp: fp == pki_files.paris_fingerprint)
    client = slave_context(pki_files, pki_files.lyon)
    outcome = await connect_once(master_stream, server, client)
    assert isinstance(outcome.master, SiteIdentity)
    assert outcome.master.name == "lyon"


async def test_a_tls_1_2_client_is_refused(
    pki_files: Pki, master_stream: MasterStream
) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    old.load_verify_locations(pki_files.ca)
    old.load_cert_chain(pki_files.paris.cert, pki_files.paris.key)
    cause = refusal(await connect_once(master_stream, master_context(pki_files), old))
    assert cause.reason == "UNSUPPORTED_PROTOCOL"


def test_a_revoked_site_is_refused_on_blocking_sockets_too(pki_files: Pki) -> None:
    server = master_context(pki_files, revoked={pki_files.paris_fingerprint})
    client = slave_context(pki_files, pki_files.paris)
    master_end, slave_end = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            server.wrap_socket(master_end, server_side=True).close()
        except ssl.SSLError as exc:
            errors.append(exc)
        finally:
            master_end.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(
            slave_end, server_hostname="127.0.0.1", suppress_ragged_eofs=False
        ) as tls:
            tls.settimeout(10)
            with pytest.raises((ssl.SSLError, ConnectionError)):
                tls.recv(1)
    finally:
        thread.join(10)
    assert len(errors) == 1 and isinstance(errors[0], CertificateRevokedError)


# --- the slave refuses ----------------------------------------------------------------------


async def test_the_slave_refuses_a_master_from_another_ca(
    pki_files: Pki, master_stream: MasterStream
) -> None:
    server = master_context(pki_files, master=pki_files.foreign_master)
    client = slave_context(pki_files, pki_files.paris)
    outcome = await connect_once(master_stream, server, client)
    assert isinstance(outcome.slave, trio.BrokenResourceError)
    assert isinstance(outcome.slave.__cause__, ssl.SSLCertVerificationError)
    assert isinstance(outcome.master, trio.BrokenResourceError)


async def test_the_slave_refuses_a_master_at_another_address(
    pki_files: Pki, master_stream: MasterStream
) -> None:
    client = slave_context(pki_files, pki_files.paris)
    outcome = await connect_once(
        master_stream, master_context(pki_files), client, "master.example.com"
    )
    assert isinstance(outcome.slave, trio.BrokenResourceError)
    cause = outcome.slave.__cause__
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in cause.verify_message
