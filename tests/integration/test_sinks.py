"""The sink contract, run against every sink on real storage: a local folder, OpenSSH's SFTP,
and pyftpdlib over FTP and FTPS. Each test checks the server's folder directly.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Literal

import attrs
import pytest

from exporters.errors import (
    CertificateError,
    HostKeyError,
    RemoteConflictError,
    RemoteMissingError,
    SinkAuthError,
    SinkConfigError,
    SinkError,
    SinkUnavailableError,
)
from exporters.sinks import (
    CHUNK_SIZE,
    FtpSink,
    FtpsSink,
    LocalSink,
    MemorySink,
    RetryPolicy,
    SftpSink,
    Sink,
    SinkSession,
    UploadStatus,
)
from tests.integration.servers import (
    FtpServer,
    SshdServer,
    free_port,
    make_ca,
    ssh_keygen,
    write_known_hosts,
)

pytestmark = pytest.mark.servers

NAME = "audit-2024-03-01.jsonl.zst.age"


@attrs.define
class Sleeps:
    """Injectable sleep that records the delays instead of waiting."""

    delays: list[float] = attrs.Factory(list)

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@attrs.frozen
class Target:
    """A sink kind under test: how to build it, and the server-side folder it writes to."""

    kind: str
    folder: Path
    build: Callable[[RetryPolicy], Sink]
    build_unreachable: Callable[[RetryPolicy], Sink]

    def sink(self, sleeps: Sleeps | None = None, attempts: int = 3) -> Sink:
        return self.build(RetryPolicy(attempts=attempts, sleep=sleeps or Sleeps()))

    def listing(self) -> list[str]:
        return sorted(os.listdir(self.folder))


def _fresh_folder(root: Path, request: pytest.FixtureRequest) -> Path:
    folder = root / request.node.name.replace("[", "-").replace("]", "")
    folder.mkdir()
    return folder


def _sftp(server: SshdServer, folder: Path, port: int | None = None) -> Callable[..., SftpSink]:
    def build(retry: RetryPolicy) -> SftpSink:
        return SftpSink(
            server.host,
            port or server.port,
            username=server.username,
            known_hosts=server.known_hosts,
            key_file=server.client_key,
            remote_dir=str(folder),
            timeout=10,
            retry=retry,
        )

    return build


def _ftp(server: FtpServer, folder: Path, port: int | None = None) -> Callable[..., FtpSink]:
    def build(retry: RetryPolicy) -> FtpSink:
        remote_dir = "/" + folder.relative_to(server.root).as_posix()
        if server.ca_file is not None:
            return FtpsSink(
                server.host,
                port or server.port,
                username=server.username,
                password_file=server.password_file,
                ca_file=server.ca_file,
                remote_dir=remote_dir,
                timeout=10,
                retry=retry,
            )
        return FtpSink(
            server.host,
            port or server.port,
            username=server.username,
            password_file=server.password_file,
            remote_dir=remote_dir,
            timeout=10,
            retry=retry,
        )

    return build


@pytest.fixture(params=["local", "sftp", "ftp", "ftps"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """Every sink kind, pointed at a fresh empty folder (servers start on first use)."""
    kind: str = request.param
    if kind == "local":
        folder = tmp_path / "outbox"
        folder.mkdir()
        return Target(
            kind,
            folder,
            lambda retry: LocalSink(folder, retry=retry),
            lambda retry: LocalSink(tmp_path / "unmounted", retry=retry),
        )
    if kind == "sftp":
        sshd: SshdServer = request.getfixturevalue("sshd_server")
        folder = _fresh_folder(sshd.root, request)
        return Target(kind, folder, _sftp(sshd, folder), _sftp(sshd, folder, free_port()))
    ftp: FtpServer = request.getfixturevalue(f"{kind}_server")
    folder = _fresh_folder(ftp.root, request)
    return Target(kind, folder, _ftp(ftp, folder), _ftp(ftp, folder, free_port()))


# --- A fake that breaks transfers half-way ------------------------------------------------


class InterruptingSink(Sink):
    """Delegates to a real sink but breaks the next ``failures`` writes after ``after`` bytes.

    ``mode="raise"``: the data source fails (the connection stays usable).
    ``mode="drop"``: the real connection is dropped mid-transfer and the rest keeps flowing.
    ``mode="truncate"``: the rest of the data silently goes missing, as with a server that
    takes a broken data connection for the end of the file.
    """

    def __init__(
        self,
        inner: Sink,
        *,
        after: int,
        mode: Literal["raise", "drop", "truncate"],
        failures: int,
    ) -> None:
        super().__init__(retry=inner.retry)
        self.inner = inner
        self.after = after
        self.mode = mode
        self.failures = failures

    @property
    def description(self) -> str:
        return self.inner.description

    def connect(self) -> SinkSession:
        return _InterruptingSession(self.inner.connect(), self)


class _InterruptingSession(SinkSession):
    def __init__(self, inner: SinkSession, owner: InterruptingSink) -> None:
        self.inner = inner
        self.owner = owner

    def _interrupted(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        sent = 0
        for chunk in chunks:
            if self.owner.failures > 0 and sent + len(chunk) > self.owner.after:
                yield chunk[: self.owner.after - sent]
                self.owner.failures -= 1
                if self.owner.mode == "raise":
                    raise SinkUnavailableError("simulated: connection reset by peer")
                if self.owner.mode == "truncate":
                    return
                self.inner.abort()
                yield chunk[self.owner.after - sent :]
            else:
                yield chunk
            sent += len(chunk)

    def write(self, name: str, chunks: Iterable[bytes]) -> None:
        self.inner.write(name, self._interrupted(chunks))

    def size(self, name: str) -> int | None:
        return self.inner.size(name)

    def read(self, name: str) -> bytes:
        return self.inner.read(name)

    def rename(self, source: str, target: str) -> None:
        self.inner.rename(source, target)

    def remove(self, name: str) -> None:
        self.inner.remove(name)

    def close(self) -> None:
        self.inner.close()

    def abort(self) -> None:
        self.inner.abort()


# --- The contract ---------------------------------------------------------------------------


class TestSinkContract:
    @pytest.mark.parametrize("size", [0, 1, 3 * CHUNK_SIZE + 123])
    def test_upload_puts_exact_bytes_under_the_final_name_only(
        self, target: Target, size: int
    ) -> None:
        data = os.urandom(size)
        result = target.sink().upload(NAME, data)

        assert result.status is UploadStatus.UPLOADED
        assert (result.size, result.sha256) == (size, hashlib.sha256(data).hexdigest())
        assert (target.folder / NAME).read_bytes() == data
        assert target.listing() == [NAME]

    def test_exists_and_fetch_see_uploaded_files(self, target: Target) -> None:
        sink = target.sink()
        data = os.urandom(5000)
        assert not sink.exists(NAME)
        sink.upload(NAME, data)

        assert sink.exists(NAME)
        assert sink.fetch(NAME) == data

    def test_fetch_of_missing_file_raises(self, target: Target) -> None:
        with pytest.raises(RemoteMissingError):
            target.sink().fetch(NAME)

    def test_upload_all_delivers_every_file_over_one_session(self, target: Target) -> None:
        files = [(NAME, os.urandom(2000)), (NAME + ".minisig", b"signature\n")]
        results = target.sink().upload_all(files)

        assert [r.status for r in results] == [UploadStatus.UPLOADED] * 2
        assert target.listing() == sorted(name for name, _ in files)
        for name, data in files:
            assert (target.folder / name).read_bytes() == data

    def test_reupload_of_same_content_is_a_no_op(self, target: Target) -> None:
        data = os.urandom(70_000)
        sink = target.sink()
        sink.upload(NAME, data)
        before = (target.folder / NAME).stat()

        result = sink.upload(NAME, data)

        assert result.status is UploadStatus.ALREADY_PRESENT
        after = (target.folder / NAME).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        assert target.listing() == [NAME]

    @pytest.mark.parametrize("other", ["same size", "other size"])
    def test_different_content_under_same_name_is_refused(self, target: Target, other: str) -> None:
        original = os.urandom(4096)
        replacement = os.urandom(4096 if other == "same size" else 100)
        sink = target.sink()
        sink.upload(NAME, original)

        with pytest.raises(RemoteConflictError) as raised:
            sink.upload(NAME, replacement)

        assert raised.value.name == NAME
        assert raised.value.local_sha256 == hashlib.sha256(replacement).hexdigest()
        assert (target.folder / NAME).read_bytes() == original
        assert target.listing() == [NAME]

    def test_source_failing_half_way_leaves_no_file_at_all(self, target: Target) -> None:
        sleeps = Sleeps()
        sink = InterruptingSink(
            target.sink(sleeps, attempts=2), after=CHUNK_SIZE + 10, mode="raise", failures=2
        )

        with pytest.raises(SinkUnavailableError, match="gave up after 2 attempts"):
            sink.upload(NAME, os.urandom(3 * CHUNK_SIZE))

        assert target.listing() == []

    def test_connection_dropped_mid_transfer_leaves_no_final_file(self, target: Target) -> None:
        data = os.urandom(3 * CHUNK_SIZE)
        sink = InterruptingSink(
            target.sink(attempts=1), after=CHUNK_SIZE + 10, mode="drop", failures=1
        )

        with pytest.raises(SinkUnavailableError):
            sink.upload(NAME, data)

        assert NAME not in target.listing()
        # Whatever the broken session left behind is a hidden temporary, and in the way of
        # nothing: the next run delivers.
        assert all(n.startswith(f".{NAME}.") and n.endswith(".part") for n in target.listing())
        assert target.sink().upload(NAME, data).status is UploadStatus.UPLOADED
        assert (target.folder / NAME).read_bytes() == data

    def test_silently_truncated_transfer_is_not_renamed(self, target: Target) -> None:
        sink = InterruptingSink(
            target.sink(attempts=1), after=CHUNK_SIZE + 10, mode="truncate", failures=1
        )

        with pytest.raises(SinkUnavailableError, match="incomplete"):
            sink.upload(NAME, os.urandom(3 * CHUNK_SIZE))

        assert target.listing() == []

    def test_interrupted_attempt_is_retried_and_completes(self, target: Target) -> None:
        sleeps = Sleeps()
        data = os.urandom(2 * CHUNK_SIZE)
        sink = InterruptingSink(
            target.sink(sleeps, attempts=3), after=1000, mode="drop", failures=1
        )

        result = sink.upload(NAME, data)

        assert result.status is UploadStatus.UPLOADED
        assert (target.folder / NAME).read_bytes() == data
        assert sleeps.delays == [2.0]

    def test_unreachable_sink_retries_with_backoff_then_gives_up(self, target: Target) -> None:
        sleeps = Sleeps()
        policy = RetryPolicy(
            attempts=5, first_delay=0.5, multiplier=3.0, max_delay=5.0, sleep=sleeps
        )
        sink = target.build_unreachable(policy)

        with pytest.raises(SinkUnavailableError, match="gave up after 5 attempts"):
            sink.upload(NAME, b"data")

        assert sleeps.delays == [0.5, 1.5, 4.5, 5.0]
        assert target.listing() == []

    def test_file_names_that_could_escape_the_folder_are_rejected(self, target: Target) -> None:
        sink = target.sink()
        for bad in ["../x", "sub/x", ".hidden", "x\r\nDELE y", ""]:
            with pytest.raises(ValueError):
                sink.upload(bad, b"data")
        assert target.listing() == []


def test_memory_fake_follows_the_same_rules() -> None:
    sleeps = Sleeps()
    sink = MemorySink(unavailable_connects=2, retry=RetryPolicy(attempts=3, sleep=sleeps))

    assert sink.upload(NAME, b"abc").status is UploadStatus.UPLOADED
    assert sink.upload(NAME, b"abc").status is UploadStatus.ALREADY_PRESENT
    with pytest.raises(RemoteConflictError):
        sink.upload(NAME, b"abd")
    assert sink.files == {NAME: b"abc"}
    assert sleeps.delays == [2.0, 4.0]


# --- Server identity and credentials --------------------------------------------------------


def _no_retry(sleeps: Sleeps) -> RetryPolicy:
    return RetryPolicy(attempts=3, sleep=sleeps)


def test_sftp_refuses_a_host_key_other_than_the_known_one(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    other = ssh_keygen(tmp_path / "other_host_key")
    known_hosts = write_known_hosts(
        tmp_path / "known_hosts", sshd_server.port, Path(f"{other}.pub")
    )
    sleeps = Sleeps()
    sink = SftpSink(
        sshd_server.host,
        sshd_server.port,
        username=sshd_server.username,
        known_hosts=known_hosts,
        key_file=sshd_server.client_key,
        remote_dir=str(sshd_server.root),
        retry=_no_retry(sleeps),
    )

    with pytest.raises(HostKeyError, match="does not match"):
        sink.upload(NAME, b"data")
    assert sleeps.delays == []  # a wrong host key is not a reason to try again


def test_sftp_refuses_a_host_missing_from_known_hosts(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    sink = SftpSink(
        sshd_server.host,
        sshd_server.port,
        username=sshd_server.username,
        known_hosts=known_hosts,
        key_file=sshd_server.client_key,
        retry=_no_retry(Sleeps()),
    )

    with pytest.raises(HostKeyError, match="not in"):
        sink.exists(NAME)


def test_sftp_with_an_unauthorised_client_key_is_refused(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    sleeps = Sleeps()
    sink = SftpSink(
        sshd_server.host,
        sshd_server.port,
        username=sshd_server.username,
        known_hosts=sshd_server.known_hosts,
        key_file=ssh_keygen(tmp_path / "stranger"),
        retry=_no_retry(sleeps),
    )

    with pytest.raises(SinkAuthError):
        sink.exists(NAME)
    assert sleeps.delays == []


def test_sftp_configuration_needs_readable_secret_files(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    common = {"username": "u", "known_hosts": sshd_server.known_hosts}
    with pytest.raises(SinkConfigError, match="cannot read key"):
        SftpSink("127.0.0.1", key_file=tmp_path / "absent", **common)
    with pytest.raises(SinkConfigError, match="exactly one"):
        SftpSink("127.0.0.1", **common)
    with pytest.raises(SinkConfigError, match="known_hosts"):
        SftpSink("127.0.0.1", username="u", known_hosts=tmp_path / "absent", key_file=Path("x"))


def test_ftps_refuses_a_certificate_from_another_ca(ftps_server: FtpServer, tmp_path: Path) -> None:
    _, stranger_ca = make_ca(tmp_path, "stranger-ca")
    sleeps = Sleeps()
    sink = FtpsSink(
        ftps_server.host,
        ftps_server.port,
        username=ftps_server.username,
        password_file=ftps_server.password_file,
        ca_file=stranger_ca,
        retry=_no_retry(sleeps),
    )

    with pytest.raises(CertificateError):
        sink.exists(NAME)
    assert sleeps.delays == []


@pytest.mark.parametrize("kind", ["ftp", "ftps"])
def test_ftp_with_a_wrong_password_is_refused(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: FtpServer = request.getfixturevalue(f"{kind}_server")
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    sleeps = Sleeps()
    if server.ca_file is None:
        sink: FtpSink = FtpSink(
            server.host,
            server.port,
            username=server.username,
            password_file=wrong,
            retry=_no_retry(sleeps),
        )
    else:
        sink = FtpsSink(
            server.host,
            server.port,
            username=server.username,
            password_file=wrong,
            ca_file=server.ca_file,
            retry=_no_retry(sleeps),
        )

    with pytest.raises(SinkAuthError):
        sink.exists(NAME)
    assert sleeps.delays == []


def test_plain_ftp_client_cannot_use_the_tls_only_server(
    ftps_server: FtpServer, tmp_path: Path
) -> None:
    """The FTPS fixture really requires TLS: a plain client is turned away at login."""
    sleeps = Sleeps()
    sink = FtpSink(
        ftps_server.host,
        ftps_server.port,
        username=ftps_server.username,
        password_file=ftps_server.password_file,
        retry=_no_retry(sleeps),
    )
    with pytest.raises(SinkError, match="TLS required"):
        sink.exists(NAME)
    assert sleeps.delays == []
