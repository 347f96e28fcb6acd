"""The private CA in the data directory: created by ``init``, used to enrol sites."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from pathlib import Path

from seatledger.config.keys import write_replacing
from transport.pki import (
    CertifiedKey,
    certificate_from_pem,
    issue_crl,
    issue_master_certificate,
    private_key_from_pem,
)
from transport.pki import (
    create_ca as new_ca,
)


def create_ca(ca_dir: Path, origin: str) -> CertifiedKey:
    """Create the CA and the master's server certificate (for 127.0.0.1 and this host)."""
    ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = new_ca(f"seatledger CA {origin}")
    ca.write(ca_dir / "ca.crt", ca_dir / "ca.key")
    names = sorted({"localhost", socket.gethostname()})
    master = issue_master_certificate(ca, dns_names=names, ip_addresses=("127.0.0.1",))
    master.write(ca_dir / "master.crt", ca_dir / "master.key")
    write_crl(ca_dir, ca, [])
    return ca


def crl_path(ca_dir: Path) -> Path:
    return ca_dir / "crl.pem"


def issued_path(ca_dir: Path, site: str) -> Path:
    """Where a site's certificate is kept, so that its serial can be revoked later."""
    return ca_dir / "issued" / f"{site}.crt"


def write_crl(ca_dir: Path, ca: CertifiedKey, serials: Iterable[int]) -> None:
    """(Re)write the CA's revocation list naming ``serials``; a running master picks it up
    at its next handshake."""
    write_replacing(crl_path(ca_dir), issue_crl(ca, serials))


def load_crl(ca_dir: Path) -> bytes | None:
    """The revocation list, or None for a data directory created before there was one."""
    try:
        return crl_path(ca_dir).read_bytes()
    except FileNotFoundError:
        return None


def load_ca(ca_dir: Path) -> CertifiedKey:
    return CertifiedKey(
        certificate_from_pem((ca_dir / "ca.crt").read_bytes()),
        private_key_from_pem((ca_dir / "ca.key").read_bytes()),
    )
