"""The private PKI: a CA per master, site certificates for slaves, a server certificate.

Keys are ECDSA P-256. A site's identity is its certificate: the subject CN (also a DNS
subjectAltName) is the site name, and the SHA-256 fingerprint of the DER certificate is what
the ledger records at enrolment and what revocation lists. Validity is always given
explicitly or defaulted from the ``now`` argument, so tests can make expired certificates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from collections.abc import Iterable
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger import check_site_name

from ._errors import CertificateError

__all__ = [
    "CertifiedKey",
    "SiteIdentity",
    "certificate_from_pem",
    "certificate_to_pem",
    "create_ca",
    "fingerprint",
    "issue_master_certificate",
    "issue_site_certificate",
    "private_key_from_pem",
    "private_key_to_pem",
    "site_name_from_cert",
]

CA_VALIDITY = dt.timedelta(days=20 * 365)
LEAF_VALIDITY = dt.timedelta(days=2 * 365)
# Site names travel as DNS subjectAltNames, so they keep to DNS-label characters.

PrivateKey = ec.EllipticCurvePrivateKey
CertSource = x509.Certificate | bytes | str


@attrs.frozen
class CertifiedKey:
    """A certificate and its private key."""

    certificate: x509.Certificate
    private_key: PrivateKey

    @property
    def cert_pem(self) -> bytes:
        """The certificate as PEM."""
        return certificate_to_pem(self.certificate)

    @property
    def key_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return private_key_to_pem(self.private_key)

    @property
    def fingerprint(self) -> str:
        """SHA-256 hex of the certificate's DER."""
        return fingerprint(self.certificate)

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write the certificate and the key (mode 0600) as PEM files."""
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600, exist_ok=True)
        key_path.chmod(0o600)
        key_path.write_bytes(self.key_pem)


@attrs.frozen
class SiteIdentity:
    """Who a peer is, as its certificate proves: the site name and the fingerprint."""

    name: str
    fingerprint: str

    @classmethod
    def from_certificate(cls, cert: CertSource) -> SiteIdentity:
        """The identity carried by ``cert`` (an x509 object, DER bytes or PEM).

        Raises:
            CertificateError: the certificate cannot be parsed or has no usable CN.
        """
        certificate = _as_certificate(cert)
        return cls(site_name_from_cert(certificate), fingerprint(certificate))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _validity(
    not_before: dt.datetime | None, not_after: dt.datetime | None, default: dt.timedelta
) -> tuple[dt.datetime, dt.datetime]:
    start = not_before if not_before is not None else _now() - dt.timedelta(minutes=5)
    end = not_after if not_after is not None else start + default
    if end <= start:
        raise ValueError("not_after must be later than not_before")
    return start, end


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(
    name: str,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CertifiedKey:
    """Create a self-signed CA named ``name`` that may sign leaf certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(not_before, not_after, CA_VALIDITY)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertifiedKey(certificate, key)


def _issue_leaf(
    ca: CertifiedKey,
    common_name: str,
    alt_names: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    not_before: dt.datetime | None,
    not_after: dt.datetime | None,
) -> CertifiedKey:
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(not_before, not_after, LEAF_VALIDITY)
    public = key.public_key()
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
            critical=False,
        )
        .sign(ca.private_key, hashes.SHA256())
    )
    return CertifiedKey(certificate, key)


def issue_site_certificate(
    ca: CertifiedKey,
    site: str,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CertifiedKey:
    """Issue the certificate a slave connector presents: CN and DNS SAN = ``site``.

    Raises:
        ValueError: ``site`` is not a DNS label (letters, digits, inner hyphens; ≤ 63).
    """
    check_site_name(site)
    return _issue_leaf(
        ca,
        site,
        [x509.DNSName(site)],
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        not_before,
        not_after,
    )


def issue_master_certificate(
    ca: CertifiedKey,
    *,
    dns_names: Iterable[str] = ("localhost",),
    ip_addresses: Iterable[str] = ("127.0.0.1",),
    common_name: str = "seatledger master",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> CertifiedKey:
    """Issue the master's server certificate, valid for the names and addresses given."""
    alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if not alt_names:
        raise ValueError("a master certificate needs at least one DNS name or IP address")
    return _issue_leaf(
        ca, common_name, alt_names, [ExtendedKeyUsageOID.SERVER_AUTH], not_before, not_after
    )


def certificate_to_pem(certificate: x509.Certificate) -> bytes:
    """The certificate as PEM."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def certificate_from_pem(data: bytes | str) -> x509.Certificate:
    """Parse one PEM certificate.

    Raises:
        CertificateError: ``data`` is not a PEM certificate.
    """
    try:
        return x509.load_pem_x509_certificate(data.encode() if isinstance(data, str) else data)
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate: {exc}", "bad_certificate") from exc


def private_key_to_pem(key: PrivateKey, password: bytes | None = None) -> bytes:
    """The key as PKCS#8 PEM, encrypted with ``password`` if one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def private_key_from_pem(data: bytes, password: bytes | None = None) -> PrivateKey:
    """Parse a PEM private key (an EC key, as this module makes).

    Raises:
        CertificateError: ``data`` is not a PEM EC private key, or the password is wrong.
    """
    try:
        key = serialization.load_pem_private_key(data, password)
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"not a usable PEM private key: {exc}", "bad_key") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError("the private key is not an EC key", "bad_key")
    return key


def _as_certificate(cert: CertSource) -> x509.Certificate:
    if isinstance(cert, x509.Certificate):
        return cert
    if isinstance(cert, str) or cert.lstrip().startswith(b"-----BEGIN"):
        return certificate_from_pem(cert)
    try:
        return x509.load_der_x509_certificate(cert)
    except ValueError as exc:
        raise CertificateError(f"not a DER certificate: {exc}", "bad_certificate") from exc


def fingerprint(cert: CertSource) -> str:
    """SHA-256 of the certificate's DER encoding, as lowercase hex.

    ``cert`` is an x509 object, DER bytes or PEM (bytes or text).
    """
    if isinstance(cert, bytes) and not cert.lstrip().startswith(b"-----BEGIN"):
        return hashlib.sha256(cert).hexdigest()
    der = _as_certificate(cert).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def site_name_from_cert(cert: CertSource) -> str:
    """The site name a certificate carries: its one subject CN.

    Raises:
        CertificateError: the certificate cannot be parsed, or has no or several CNs.
    """
    names = _as_certificate(cert).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise CertificateError(
            f"certificate has {len(names)} common names, expected one", "bad_certificate"
        )
    value = names[0].value
    return value if isinstance(value, str) else value.decode()


def issue_crl(ca: CertifiedKey, revoked_serials: Iterable[int], *,
              now: dt.datetime | None = None) -> bytes:
    """A certificate revocation list (PEM) signed by ``ca``, naming ``revoked_serials``. A
    master that loads it refuses those certificates inside the TLS handshake, with the
    standard "certificate revoked" alert."""
    now = now or dt.datetime.now(dt.UTC)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca.certificate.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + dt.timedelta(days=3650)))
    for serial in sorted(set(revoked_serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now).build())
    crl = builder.sign(ca.private_key, hashes.SHA256())
    return crl.public_bytes(serialization.Encoding.PEM)
