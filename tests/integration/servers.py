"""Real servers for the integration tests, all on 127.0.0.1, in their own folders.

* :func:`start_sshd`: the system's OpenSSH ``sshd`` (Debian package ``openssh-server``) in the
  foreground on a free port, with fresh host and client ed25519 keys and a known_hosts file
  for the client. Logs in as the user running the tests, by key.
* :func:`start_ftp_server`: pyftpdlib in a background thread, plain FTP or FTPS (a throwaway
  CA signs a certificate for IP 127.0.0.1; TLS is required on control and data channels).

Each ``start_*`` either returns a server that answered on its port or raises
:class:`ServerStartError` with the reason (and the server's log).
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import attrs

from tests.processes import die_with_parent
from transport.pki import CertifiedKey, create_ca, issue_master_certificate

HOST = "127.0.0.1"
_START_TIMEOUT = 10.0


class ServerStartError(RuntimeError):
    """A test server could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago (connecting is refused)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _wait_for_banner(
    port: int, prefix: bytes, alive: Callable[[], bool], describe: Callable[[], str]
) -> None:
    """Connect until the server greets with ``prefix``, or raise ServerStartError."""
    deadline = time.monotonic() + _START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise ServerStartError(f"server exited during start-up\n{describe()}")
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                banner = sock.recv(64)
            if banner.startswith(prefix):
                return
            last = ValueError(f"unexpected greeting {banner!r}")
        except OSError as err:
            last = err
        time.sleep(0.05)
    raise ServerStartError(f"no {prefix!r} greeting on port {port} ({last})\n{describe()}")


# --- OpenSSH -----------------------------------------------------------------------------


@attrs.frozen
class SshdServer:
    """A running sshd. ``root`` is a folder the client may write to."""

    port: int
    username: str
    root: Path
    client_key: Path
    known_hosts: Path
    workdir: Path
    process: subprocess.Popen[bytes] = attrs.field(eq=False)

    host: str = HOST

    def stop(self) -> None:
        """Terminate sshd (and so its sessions) and wait for it."""
        _stop_process(self.process)


def ssh_keygen(path: Path) -> Path:
    """Create an ed25519 key pair without passphrase at ``path`` (and ``path.pub``)."""
    tool = shutil.which("ssh-keygen")
    if tool is None:
        raise ServerStartError("ssh-keygen not found (Debian package openssh-client)")
    result = subprocess.run(
        [tool, "-q", "-t", "ed25519", "-N", "", "-C", "seatledger-test", "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServerStartError(f"ssh-keygen failed: {result.stderr.strip()}")
    return path


def write_known_hosts(path: Path, port: int, public_key_file: Path) -> Path:
    """A known_hosts file naming ``[127.0.0.1]:port`` with the key in ``public_key_file``."""
    key_type, key_base64 = public_key_file.read_text().split()[:2]
    path.write_text(f"[{HOST}]:{port} {key_type} {key_base64}\n")
    return path


def _sshd_binary() -> str:
    found = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    if found is None:
        raise ServerStartError("sshd not found (Debian package openssh-server)")
    return found


def _openssh_version(sshd: str) -> tuple[int, int]:
    output = subprocess.run([sshd, "-V"], capture_output=True, text=True, check=False)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", output.stdout + output.stderr)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def start_sshd(workdir: Path) -> SshdServer:
    """Start sshd serving SFTP (internal-sftp) on a free port; see the module notes."""
    sshd = _sshd_binary()
    root = workdir / "root"
    root.mkdir(parents=True)
    host_key = ssh_keygen(workdir / "host_key")
    client_key = ssh_keygen(workdir / "client_key")
    authorized = workdir / "authorized_keys"
    authorized.write_text((workdir / "client_key.pub").read_text())
    if os.geteuid() == 0:
        # sshd started as root insists on its privilege-separation folder.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    # 9.8 added penalties for clients that disconnect early: our refusal tests do that.
    penalties = "PerSourcePenalties no\n" if _openssh_version(sshd) >= (9, 8) else ""
    last_error: ServerStartError | None = None
    for _ in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        config = workdir / "sshd_config"
        config.write_text(
            f"Port {port}\n"
            f"ListenAddress {HOST}\n"
            f"HostKey {host_key}\n"
            f"PidFile {workdir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {authorized}\n"
            "StrictModes no\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "PermitRootLogin prohibit-password\n"
            "MaxStartups 100\n"
            "LogLevel VERBOSE\n"
            f"{penalties}"
            "Subsystem sftp internal-sftp\n"
        )
        check = subprocess.run([sshd, "-t", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise ServerStartError(f"sshd rejects its configuration: {check.stderr.strip()}")
        try:
            process = _run_sshd(sshd, config, workdir / "sshd.log", port)
        except ServerStartError as err:
            last_error = err
            continue
        return SshdServer(
            port=port,
            username=getpass.getuser(),
            root=root,
            client_key=client_key,
            known_hosts=write_known_hosts(workdir / "known_hosts", port, Path(f"{host_key}.pub")),
            workdir=workdir,
            process=process,
        )
    raise ServerStartError(f"sshd did not start after 3 tries: {last_error}")


def _run_sshd(sshd: str, config: Path, log_path: Path, port: int) -> subprocess.Popen[bytes]:
    """Launch sshd in the foreground and wait for its greeting; stop it if none comes."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )
    try:
        _wait_for_banner(
            port,
            b"SSH-",
            lambda: process.poll() is None,
            lambda: log_path.read_text(errors="replace")[-2000:],
        )
    except ServerStartError:
        _stop_process(process)
        raise
    return process


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- FTP and FTPS (pyftpdlib) -------------------------------------------------------------


@attrs.frozen
class TlsFiles:
    """A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost."""

    ca_file: Path
    cert_file: Path
    key_file: Path


def make_ca(workdir: Path, name: str) -> tuple[CertifiedKey, Path]:
    """Create a throwaway CA (the project's own PKI code); return it and its PEM file."""
    ca = create_ca(name)
    path = workdir / f"{name}.pem"
    path.write_bytes(ca.cert_pem)
    return ca, path


def make_tls_files(workdir: Path) -> TlsFiles:
    """CA plus a server certificate with subjectAltName IP:127.0.0.1 and DNS:localhost."""
    ca, ca_file = make_ca(workdir, "test-ca")
    server = issue_master_certificate(ca, dns_names=("localhost",), ip_addresses=(HOST,),
                                      common_name="localhost")
    cert_file, key_file = workdir / "server.pem", workdir / "server.key"
    server.write(cert_file, key_file)
    return TlsFiles(ca_file=ca_file, cert_file=cert_file, key_file=key_file)


class FtpServer:
    """pyftpdlib serving ``root`` for one user, driven by its own IO loop in a thread."""

    def __init__(self, workdir: Path, *, tls: bool) -> None:
        # Imported here so a missing pyftpdlib/pyOpenSSL becomes a ServerStartError.
        try:
            with warnings.catch_warnings():
                # pyftpdlib still imports asyncore/asynchat, deprecated since Python 3.11.
                warnings.simplefilter("ignore", DeprecationWarning)
                from pyftpdlib.authorizers import DummyAuthorizer
                from pyftpdlib.handlers import FTPHandler
                from pyftpdlib.ioloop import IOLoop
                from pyftpdlib.servers import FTPServer

            tls_handler = None
            if tls:
                from pyftpdlib.handlers import TLS_FTPHandler

                tls_handler = TLS_FTPHandler
        except ImportError as err:
            raise ServerStartError(f"pyftpdlib (and pyOpenSSL for FTPS) needed: {err}") from err

        self.host = HOST
        self.username = "exporter"
        self.root = workdir / "root"
        self.root.mkdir(parents=True)
        self.password_file = workdir / "password"
        self.password_file.write_text("s3cret-for-tests\n")
        self.tls = make_tls_files(workdir) if tls else None
        authorizer = DummyAuthorizer()
        authorizer.add_user(self.username, "s3cret-for-tests", str(self.root), perm="elradfmwMT")
        attributes: dict[str, object] = {
            "authorizer": authorizer,
            "timeout": 30,
            "auth_failed_timeout": 0,  # refuse bad logins at once, not after 3 s
        }
        base: type = FTPHandler
        if self.tls is not None and tls_handler is not None:
            base = tls_handler
            attributes.update(
                certfile=str(self.tls.cert_file),
                keyfile=str(self.tls.key_file),
                tls_control_required=True,
                tls_data_required=True,
                ssl_context=None,  # the handler caches its context on the class: use ours
            )
        # A subclass per server: pyftpdlib keeps its settings on the handler class.
        handler = type("TestFtpHandler", (base,), attributes)
        self._ioloop = IOLoop()  # not the process-wide singleton: one loop per server thread
        try:
            self._server = FTPServer((HOST, 0), handler, ioloop=self._ioloop)
        except Exception as err:
            raise ServerStartError(f"pyftpdlib could not listen: {err}") from err
        # pyftpdlib installs a stderr handler at INFO unless its logger already has one.
        ftp_logger = logging.getLogger("pyftpdlib")
        if not ftp_logger.handlers:
            ftp_logger.addHandler(logging.NullHandler())
        ftp_logger.setLevel(logging.WARNING)
        self.port = int(self._server.address[1])
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, name=f"ftp-{self.port}", daemon=True)
        self._thread.start()
        _wait_for_banner(
            self.port,
            b"220",
            self._thread.is_alive,
            lambda: f"server thread failure: {self._failure!r}",
        )

    @property
    def ca_file(self) -> Path | None:
        """The CA file clients verify the server against (FTPS only)."""
        return self.tls.ca_file if self.tls is not None else None

    def _serve(self) -> None:
        try:
            while not self._stopping.is_set():
                self._ioloop.loop(timeout=0.05, blocking=False)
        except BaseException as err:  # reported through the start-up check and stop()
            self._failure = err
            raise
        finally:
            self._server.close_all()

    def stop(self) -> None:
        """Stop the loop, close every connection, join the thread."""
        self._stopping.set()
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise RuntimeError(f"FTP server thread on port {self.port} did not stop")


def start_ftp_server(workdir: Path, *, tls: bool) -> FtpServer:
    """Start pyftpdlib (FTPS with mandatory TLS if ``tls``) on a free port in a thread."""
    workdir.mkdir(parents=True, exist_ok=True)
    return FtpServer(workdir, tls=tls)


# --- A server that goes away and comes back ------------------------------------------------


class TcpRelay:
    """Forwards connections from its own port on 127.0.0.1 to ``target_port``.

    :meth:`down` closes the port and every relayed connection, as a server that went away;
    :meth:`up` listens again on the same port. Clients see the relay as the server.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.host = HOST
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def up(self) -> None:
        """Listen (again) on :attr:`port`."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(16)
        listener.settimeout(0.05)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True,
                                        name=f"relay-{self.port}")
        self._thread.start()

    def down(self) -> None:
        """Stop listening and drop every relayed connection."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            for sock in self._sockets:
                _close_quietly(sock)
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while not self._stopping.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                try:
                    upstream = socket.create_connection((HOST, self.target_port), timeout=5)
                except OSError:
                    _close_quietly(client)
                    continue
                client.settimeout(None)
                upstream.settimeout(None)
                with self._lock:
                    self._sockets.update((client, upstream))
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # One side is done: end the relayed connection both ways.
            for sock in (source, sink):
                _close_quietly(sock)
            with self._lock:
                self._sockets.discard(source)
                self._sockets.discard(sink)


def _close_quietly(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
