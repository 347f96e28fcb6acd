"""A revoked site's certificate is refused inside the TLS handshake with the standard
"certificate revoked" alert, so its operator can tell it from a wrong CA; revoking works
while the master runs (the CA's revocation list is reloaded at the next handshake)."""

from __future__ import annotations

import signal
import ssl
from pathlib import Path

import trio

from seatledger.cli.main import main
from seatledger.config.bundle import Bundle
from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.services.datadir import init_data_dir
from seatledger.services.sites import enrol_site
from tests.integration.test_crash import free_port, start_master
from transport.tls import client_context


async def _handshake(bundle: Bundle, port: int) -> ssl.SSLError | None:
    """None if the handshake and a first read go through, else the SSL error seen."""
    context = client_context(bundle.ca_pem.encode(), bundle.cert_pem.encode(),
                             bundle.key_pem.encode())
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    tls = trio.SSLStream(tcp, context, server_hostname="127.0.0.1")
    try:
        with trio.fail_after(10):
            await tls.do_handshake()
            # TLS 1.3: the server's verdict on our certificate comes after our Finished.
            with trio.move_on_after(1):
                await tls.receive_some(1)
    except trio.BrokenResourceError as e:
        assert isinstance(e.__cause__, ssl.SSLError), repr(e.__cause__)
        return e.__cause__
    finally:
        await trio.aclose_forcefully(tls)
    return None


async def test_a_site_revoked_while_the_master_runs_gets_the_revoked_alert(
        tmp_path: Path) -> None:
    root = tmp_path / "data"
    config = init_data_dir(root, history=False)
    port = free_port()
    with open_ledger(config) as app:
        app.issue_licence(customer="Acme", limits={"PRED": 100})
        north = Bundle.read(enrol_site(config, app, "north", master=f"127.0.0.1:{port}",
                                       output=tmp_path / "north.bundle"))
    master = await start_master(root, port)
    try:
        assert await _handshake(north, port) is None
        assert await trio.to_thread.run_sync(
            main, ["site", "revoke", "north", "--data-dir", str(root)]) == 0
        refused = await _handshake(north, port)
        assert refused is not None and "CERTIFICATE_REVOKED" in str(refused), refused
        assert master.poll() is None
    finally:
        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=30) == 0
    assert load_config(root).layout.ca_dir.joinpath("crl.pem").exists()
