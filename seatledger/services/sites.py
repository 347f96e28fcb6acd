"""Enrolling sites: a certificate from the data directory's CA, the enrolment event, a bundle."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from ledger import LedgerApp, LicenceError
from seatledger.config.bundle import Bundle, parse_address
from seatledger.config.ca import issued_path, load_ca, write_crl
from seatledger.config.keys import write_replacing as write_private_replacing
from seatledger.config.settings import Config
from seatledger.services import operator
from seatledger.services.operator import DirectPort, LedgerPort
from transport.pki import certificate_from_pem, issue_site_certificate


def enrol_site(config: Config, ledger: LedgerApp | LedgerPort, name: str, *,
               local_limits: Mapping[str, int] | None = None, master: str | None = None,
               secondary: str | None = None, output: Path | None = None) -> Path:
    """Issue the site's certificate, record the enrolment (with its fingerprint), and write
    the site's bundle (0600). Returns the bundle's path."""
    primary = master or config.listen
    parse_address(primary)
    if secondary:
        parse_address(secondary)
    ca = load_ca(config.layout.ca_dir)
    try:
        cert = issue_site_certificate(ca, name)
    except ValueError as e:
        raise LicenceError(str(e)) from None
    write_private_replacing(issued_path(config.layout.ca_dir, name), cert.cert_pem)
    port = DirectPort(ledger) if isinstance(ledger, LedgerApp) else ledger
    port.call("site.enrol", name=name, fingerprint=cert.fingerprint,
              local_limits=dict(local_limits or {}))
    path = output or config.layout.bundles / f"{name}.bundle"
    Bundle(site=name, ca_pem=(config.layout.ca_dir / "ca.crt").read_text(),
           cert_pem=cert.cert_pem.decode(), key_pem=cert.key_pem.decode(),
           primary=primary, secondary=secondary).write(path)
    return path


def admission_check(app: LedgerApp) -> Callable[[str], bool]:
    """The handshake's check: True (refuse) unless a certificate fingerprint is an enrolled,
    unrevoked site's. Reads the ledger's current state at each handshake."""
    def refused(fingerprint: str) -> bool:
        return not app.licence.admits_certificate(fingerprint)
    return refused


def revoke_site(config: Config, port: LedgerPort, name: str) -> int:
    """Revoke ``name`` in the ledger (its seats are released) and in the CA's revocation
    list, so that its certificate is refused in the handshake with the "certificate
    revoked" alert. Returns how many seats were released."""
    released = operator.revoke_site(port, name)
    ca_dir = config.layout.ca_dir
    serials = []
    for site in operator.list_sites(port):
        path = issued_path(ca_dir, site["site"])
        if site["status"] == "revoked" and path.exists():
            serials.append(certificate_from_pem(path.read_bytes()).serial_number)
    write_crl(ca_dir, load_ca(ca_dir), serials)
    return released


__all__ = ["admission_check", "enrol_site", "revoke_site"]
