"""TLS contexts for the master and the slaves: TLS 1.3 only, certificates verified both ways.

There is no plaintext mode. Both contexts trust only the master's private CA. The master
requires a client certificate; the slave checks the master's certificate against the address
it dials (pass it as ``server_hostname`` to ``trio.SSLStream``).

Revocation happens *in* the handshake, on the master's side. Python's ``ssl`` module has no
certificate-verify callback, its ``sni_callback`` runs before the client has sent its
certificate, and a CRL would need the CA key on the master and a fresh CRL for every change
(OpenSSL then refuses *every* site if it is stale). So :func:`server_context` installs an
``SSLObject`` subclass whose ``do_handshake`` asks the revocation check about the peer's
fingerprint the moment OpenSSL has verified the chain, and raises
:class:`CertificateRevokedError` from the handshake itself. The master's handshake therefore
fails (trio reports ``BrokenResourceError`` caused by it) before a single application byte is
read, so nothing a revoked site sends reaches the protocol core or the ledger, and no daemon
code can forget the check. The check is consulted on every handshake, so revoking a site
takes effect for its next connection without rebuilding the context; the daemon closes
sessions already open. In TLS 1.3 the client finishes its half of the handshake first, so a
revoked slave (like one whose certificate OpenSSL rejects) learns of the refusal on its first
read, as a broken stream.

Alerts. When OpenSSL refuses a peer (a certificate from another CA, an expired one, none at
all, an old protocol) it writes the TLS alert that says why into the outgoing memory BIO and
fails the handshake; a caller driving memory BIOs (trio's ``SSLStream``) then drops those
bytes, and the peer sees only "unexpected EOF". The SSLObject classes here keep the failure
back for one round: the handshake first asks to be called again (``SSLWantReadError``), so the
caller writes the pending alert, and the next call raises the original error. The peer reads
"tlsv1 alert unknown ca", "certificate expired" and so on, and an operator can tell a wrong
CA from an expired certificate. A certificate named in the CA's revocation list
(``server_context(crl_pem=...)``) is refused by OpenSSL itself, with "certificate revoked".
One refused only by the ``revoked`` check (revoked in the ledger, not in the list) passed
OpenSSL's checks: its handshake is complete, Python's ``ssl`` offers no way to send an alert
then, and that peer sees the stream end without one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import ssl
import tempfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import CertificateError
from .pki import SiteIdentity

if TYPE_CHECKING:
    import trio

    from .tls_stream import TLSStream

__all__ = [
    "CertificateRevokedError",
    "PemSource",
    "RevocationCheck",
    "client_context",
    "peer_identity",
    "server_context",
]

PemSource = bytes | str | os.PathLike[str]
"""PEM content (bytes or text), or the path of a PEM file."""
RevocationCheck = Callable[[str], bool] | Collection[str]
"""A predicate on a SHA-256 hex fingerprint, or a (live) collection of revoked ones."""


class CertificateRevokedError(ssl.SSLCertVerificationError):
    """The peer's certificate verified, but its fingerprint has been revoked."""


def _pem_bytes(source: PemSource) -> bytes:
    if isinstance(source, bytes):
        return source
    if isinstance(source, str):
        return source.encode("ascii")
    return Path(source).read_bytes()


@contextlib.contextmanager
def _pem_file(pem: bytes) -> Iterator[str]:
    """A path OpenSSL can read ``pem`` from (it loads certificate chains only from files).

    On Linux the bytes live in an anonymous memory file, so the private key never touches a
    file system; elsewhere in a private temporary directory, removed at once.
    """
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("seatledger-pem", os.MFD_CLOEXEC)
        try:
            with os.fdopen(os.dup(fd), "wb") as file:
                file.write(pem)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
    else:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory, "chain.pem")
            path.touch(mode=0o600)
            path.write_bytes(pem)
            yield str(path)


def _base_context(
    purpose: int, ca_pem: PemSource, cert_pem: PemSource, key_pem: PemSource
) -> ssl.SSLContext:
    context = _AlertingContext(purpose)
    context.sslobject_class = _AlertingSSLObject
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cadata=_pem_bytes(ca_pem).decode("ascii"))
        with _pem_file(_pem_bytes(key_pem) + b"\n" + _pem_bytes(cert_pem)) as chain:
            context.load_cert_chain(chain)
    except (ssl.SSLError, ValueError) as exc:
        raise CertificateError(f"cannot load TLS credentials: {exc}", "bad_credentials") from exc
    return context


def _revocation_predicate(revoked: RevocationCheck) -> Callable[[str], bool]:
    if callable(revoked):
        return revoked
    return revoked.__contains__


class _AlertingContext(ssl.SSLContext):
    """An SSLContext whose memory-BIO objects know their outgoing BIO (to send alerts)."""

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        tls = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if isinstance(tls, _AlertingSSLObject):
            tls._outgoing_bio = outgoing
        return tls


class _AlertingSSLObject(ssl.SSLObject):
    """An SSLObject whose failed handshake still gets its TLS alert written (see the module
    docstring, "Alerts")."""

    _outgoing_bio: ssl.MemoryBIO | None = None
    _failure: ssl.SSLError | None = None

    def do_handshake(self) -> None:
        """Run the handshake; a failure with an alert pending is raised one call later."""
        if self._failure is not None:
            raise self._failure
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            if self._outgoing_bio is None or not self._outgoing_bio.pending:
                raise
            self._failure = exc
            raise ssl.SSLWantReadError("handshake failed: its alert is written first") from exc


class _CheckedSSLObject(_AlertingSSLObject):
    """An SSLObject that refuses revoked peers at the end of its handshake."""

    _is_revoked: Callable[[str], bool]

    def do_handshake(self) -> None:
        """Run the handshake, then refuse the peer if its certificate is revoked."""
        super().do_handshake()
        _refuse_if_revoked(self, self._is_revoked)


class _CheckedSSLSocket(ssl.SSLSocket):
    """The same check for blocking sockets wrapped with ``wrap_socket``."""

    _is_revoked: Callable[[str], bool]

    def do_handshake(self, block: bool = False) -> None:
        """Run the handshake, then refuse the peer if its certificate is revoked."""
        super().do_handshake(block)
        _refuse_if_revoked(self, self._is_revoked)


def _refuse_if_revoked(
    tls: ssl.SSLObject | ssl.SSLSocket, is_revoked: Callable[[str], bool]
) -> None:
    der = tls.getpeercert(binary_form=True)
    if not der:  # CERT_REQUIRED makes OpenSSL refuse this first; kept as a backstop.
        raise ssl.SSLCertVerificationError("peer presented no certificate")
    digest = hashlib.sha256(der).hexdigest()
    if is_revoked(digest):
        raise CertificateRevokedError(f"certificate {digest} has been revoked")


def server_context(
    ca_pem: PemSource,
    cert_pem: PemSource,
    key_pem: PemSource,
    *,
    revoked: RevocationCheck = frozenset(),
    crl_pem: bytes | None = None,
) -> ssl.SSLContext:
    """The master's context: TLS 1.3 only, a client certificate from our CA required.

    ``crl_pem``: a revocation list from the CA (see :func:`transport.pki.issue_crl`); the
    peers it names are refused with the "certificate revoked" alert.
    ``revoked`` is consulted at every handshake with the peer certificate's SHA-256 hex
    fingerprint (see the module docstring); a revoked peer's handshake raises
    :class:`CertificateRevokedError`. Session tickets are off, so every connection is a full
    handshake that re-verifies the certificate (expiry, revocation).

    Raises:
        CertificateError: the CA, certificate or key cannot be loaded or do not match.
    """
    context = _base_context(ssl.PROTOCOL_TLS_SERVER, ca_pem, cert_pem, key_pem)
    context.num_tickets = 0
    if crl_pem is not None:
        # Certificates the CA revoked fail inside the handshake, with the standard alert.
        try:
            with _pem_file(crl_pem) as crl_file:  # cadata takes certificates only
                context.load_verify_locations(cafile=crl_file)
        except (ssl.SSLError, ValueError) as exc:
            raise CertificateError(f"cannot load the revocation list: {exc}",
                                   "bad_credentials") from exc
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    check = staticmethod(_revocation_predicate(revoked))
    context.sslobject_class = type(
        "RevocationCheckedSSLObject", (_CheckedSSLObject,), {"_is_revoked": check}
    )
    context.sslsocket_class = type(
        "RevocationCheckedSSLSocket", (_CheckedSSLSocket,), {"_is_revoked": check}
    )
    return context


def client_context(ca_pem: PemSource, cert_pem: PemSource, key_pem: PemSource) -> ssl.SSLContext:
    """A slave's context: TLS 1.3 only, presents the site certificate, verifies the master.

    The master's certificate must chain to our CA and match the ``server_hostname`` given
    when wrapping (the address dialled: a DNS name or an IP address).

    Raises:
        CertificateError: the CA, certificate or key cannot be loaded or do not match.
    """
    context = _base_context(ssl.PROTOCOL_TLS_CLIENT, ca_pem, cert_pem, key_pem)
    context.check_hostname = True
    return context


def peer_identity(
    stream: trio.SSLStream[Any] | TLSStream | ssl.SSLObject | ssl.SSLSocket,
) -> SiteIdentity:
    """The peer's identity (certificate CN and fingerprint), after the handshake.

    Raises:
        CertificateError: the peer presented no certificate or one without a single CN.
    """
    der = stream.getpeercert(binary_form=True)
    if not der:
        raise CertificateError("peer presented no certificate", "no_certificate")
    return SiteIdentity.from_certificate(der)
