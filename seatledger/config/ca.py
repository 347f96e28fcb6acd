"""The private CA in the data directory: created by ``init``, used to enrol sites."""

from __future__ import annotations

import socket
from pathlib import Path

from transport.pki import (
    CertifiedKey,
    certificate_from_pem,
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
    return ca


def load_ca(ca_dir: Path) -> CertifiedKey:
    return CertifiedKey(
        certificate_from_pem((ca_dir / "ca.crt").read_bytes()),
        private_key_from_pem((ca_dir / "ca.key").read_bytes()),
    )
