"""The private CA in the data directory: created by ``init``, used to enrol sites."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
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


def create_ca(ca_dir: Path, origin: str, also_names: Sequence[str] = ()) -> CertifiedKey:
    """Create the CA and the master's server certificate (for 127.0.0.1, this host, and
    ``also_names``: e.g. a standby master's host name or address)."""
    ca_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = new_ca(f"seatledger CA {origin}")
    ca.write(ca_dir / "ca.crt", ca_dir / "ca.key")
    _write_master_certificate(ca_dir, ca, also_names)
    write_crl(ca_dir, ca, [])
    return ca


def reissue_master_certificate(ca_dir: Path, also_names: Sequence[str]) -> list[str]:
    """Replace the master's certificate (and key) with one from the same CA that also names
    ``also_names`` (DNS names or IP addresses): what a standby master needs when it joins an
    existing data directory. Sites' bundles stay valid (they trust the CA, not the
    certificate). Returns every name the new certificate holds.

    Raises:
        ValueError: a name is neither a DNS name nor an IP address.
    """
    return _write_master_certificate(ca_dir, load_ca(ca_dir), also_names)


def master_names(also_names: Sequence[str]) -> tuple[list[str], list[str]]:
    """The DNS names and IP addresses a master certificate holds: localhost, 127.0.0.1,
    this host's name, and ``also_names``.

    Raises:
        ValueError: a name is neither a DNS name nor an IP address.
    """
    dns = {"localhost", socket.gethostname()}
    ips = {"127.0.0.1"}
    for name in also_names:
        name = name.strip()
        try:
            ips.add(str(ipaddress.ip_address(name)))
        except ValueError:
            if not name or any(c.isspace() or c in "/:@[]" for c in name):
                raise ValueError(f"{name!r} is neither a host name nor an IP address") from None
            dns.add(name)
    return sorted(dns), sorted(ips)


def _write_master_certificate(ca_dir: Path, ca: CertifiedKey,
                              also_names: Sequence[str]) -> list[str]:
    dns, ips = master_names(also_names)
    master = issue_master_certificate(ca, dns_names=dns, ip_addresses=ips)
    master.write(ca_dir / "master.crt", ca_dir / "master.key")
    return dns + ips


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
