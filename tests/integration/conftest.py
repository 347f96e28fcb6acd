"""Session-wide real servers for the integration tests (see ``servers.py``).

A server that cannot start fails the tests that need it, loudly: integration tests must never
pass by skipping. Servers start on first use and stop at the end of the session.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.servers import (
    FtpServer,
    ServerStartError,
    SshdServer,
    start_ftp_server,
    start_sshd,
)


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """OpenSSH sshd with SFTP, key login as the current user, known_hosts for the client."""
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except ServerStartError as err:
        pytest.fail(f"cannot start sshd: {err}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """Plain FTP (pyftpdlib) in a background thread."""
    try:
        server = start_ftp_server(tmp_path_factory.mktemp("ftp"), tls=False)
    except ServerStartError as err:
        pytest.fail(f"cannot start the FTP server: {err}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ftps_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FtpServer]:
    """FTPS (pyftpdlib, TLS required on control and data) with a test CA."""
    try:
        server = start_ftp_server(tmp_path_factory.mktemp("ftps"), tls=True)
    except ServerStartError as err:
        pytest.fail(f"cannot start the FTPS server: {err}", pytrace=False)
    yield server
    server.stop()
