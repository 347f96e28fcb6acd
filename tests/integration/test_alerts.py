"""Alerts to people, against real servers: a local HTTP receiver checking the webhook's
HMAC, a real SMTP server (aiosmtpd) requiring STARTTLS and a login, and a receiver that
hangs while a real master process keeps granting seats."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from exporters import generate_age_identity
from ledger import ManualClock
from seatledger.alerts import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Alert,
    Channel,
    Dispatcher,
    EmailChannel,
    WebhookChannel,
    load_alert_settings,
)
from seatledger.bootstrap import export_schedule, master_context
from seatledger.config.bundle import Bundle
from seatledger.config.settings import ConfigError, load_config
from seatledger.config.store import open_ledger
from seatledger.daemons.master import child_changed, daily_exports, read_children
from seatledger.daemons.supervisor import RestartPolicy, Supervisor
from seatledger.master.server import Master, MasterSettings, trio_now
from seatledger.services.datadir import init_data_dir
from seatledger.services.sites import enrol_site
from tests.integration.servers import HOST, free_port, make_tls_files
from tests.integration.test_crash import load
from tests.licensing import licensed_data_dir
from tests.processes import die_with_parent
from transport import (
    NEED_DATA,
    Acquire,
    Connection,
    Granted,
    Hello,
    Message,
    Role,
    Sync,
    SyncDone,
    Welcome,
)
from transport.tls import client_context

SECRET = b"s3cret-shared-with-the-receiver"
AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
EXPORT_START = datetime(2026, 3, 2, 6, 0, tzinfo=UTC)


# ---------------------------------------------------------------------- the HTTP receiver
@attrs.define
class Received:
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A local HTTP server in a thread. Each POST is recorded, then answered with the next
    of ``statuses`` (the last one repeats); with ``hang`` it is never answered while the
    receiver runs."""

    def __init__(self, statuses: tuple[int, ...] = (200,), *, hang: bool = False) -> None:
        self.statuses = list(statuses)
        self.hang = hang
        self.received: list[Received] = []
        self.got_one = threading.Event()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(Received(dict(self.headers.items()), body))
                receiver.got_one.set()
                if receiver.hang:
                    receiver.released.wait()
                status = (receiver.statuses.pop(0) if len(receiver.statuses) > 1
                          else receiver.statuses[0])
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test reads what was received, not the access log

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.stop()


def start_receiver(receivers: list[Receiver], *statuses: int, hang: bool = False) -> Receiver:
    receiver = Receiver(statuses or (200,), hang=hang)
    receivers.append(receiver)
    return receiver


def check_signature(received: Received, secret: bytes = SECRET) -> dict[str, Any]:
    """What a receiver does: recompute the HMAC over "<timestamp>.<body>", compare in
    constant time, refuse an old timestamp. Returns the alert."""
    timestamp = received.headers[TIMESTAMP_HEADER]
    assert abs(time.time() - int(timestamp)) < 300
    expected = "sha256=" + hmac.new(secret, f"{timestamp}.".encode() + received.body,
                                    hashlib.sha256).hexdigest()
    assert hmac.compare_digest(received.headers[SIGNATURE_HEADER], expected)
    assert received.headers["Content-Type"] == "application/json"
    alert: dict[str, Any] = json.loads(received.body)
    return alert


async def wait_until(condition: Any, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.02)


async def run_dispatcher(dispatcher: Dispatcher, until: Any, timeout: float = 10.0) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatcher.run)
        await wait_until(until, timeout)
        nursery.cancel_scope.cancel()


# ---------------------------------------------------------------------- webhook
async def test_webhook_posts_the_alert_signed_with_hmac(receivers: list[Receiver]) -> None:
    receiver = start_receiver(receivers)
    dispatcher = Dispatcher([WebhookChannel(receiver.url, SECRET, timeout=5)], master="acme")
    dispatcher.submit(Alert("overuse", "warning", "PRED over-use: 101 in use", AT))
    stats = dispatcher.statistics()[0]
    await run_dispatcher(dispatcher, lambda: stats.sent == 1)

    [received] = receiver.received
    alert = check_signature(received)
    assert alert == {"kind": "overuse", "severity": "warning", "text": "PRED over-use: 101 in use",
                     "at": AT.isoformat(), "site": None, "master": "acme"}


async def test_a_wrong_secret_fails_the_receivers_check(receivers: list[Receiver]) -> None:
    receiver = start_receiver(receivers)
    dispatcher = Dispatcher([WebhookChannel(receiver.url, b"another secret", timeout=5)])
    dispatcher.submit(Alert("overuse", "warning", "x", AT))
    await run_dispatcher(dispatcher, lambda: receiver.received)
    with pytest.raises(AssertionError):
        check_signature(receiver.received[0])


async def test_webhook_retries_with_backoff_until_delivered(receivers: list[Receiver]) -> None:
    receiver = start_receiver(receivers, 500, 503, 200)
    dispatcher = Dispatcher([WebhookChannel(receiver.url, SECRET, timeout=5)], retries=3,
                            first_backoff=0.2)
    dispatcher.submit(Alert("site_cut_off", "critical", "site north is cut off", AT,
                            site="north"))
    stats = dispatcher.statistics()[0]
    began = trio.current_time()
    await run_dispatcher(dispatcher, lambda: stats.sent == 1)
    assert trio.current_time() - began >= 0.2 + 0.4  # backed off 0.2 s, then 0.4 s
    assert (stats.failed_attempts, stats.dropped) == (2, 0)
    assert len(receiver.received) == 3
    assert {check_signature(r)["site"] for r in receiver.received} == {"north"}


async def test_webhook_alert_is_dropped_and_counted_after_the_last_retry(
        receivers: list[Receiver]) -> None:
    receiver = start_receiver(receivers, 500)
    dispatcher = Dispatcher([WebhookChannel(receiver.url, SECRET, timeout=5)], retries=2,
                            first_backoff=0.05)
    dispatcher.submit(Alert("export_failed", "critical", "sink unreachable", AT))
    stats = dispatcher.statistics()[0]
    await run_dispatcher(dispatcher, lambda: stats.dropped_failed == 1)
    assert (stats.sent, stats.failed_attempts) == (0, 3)
    assert len(receiver.received) == 3


async def test_a_refused_connection_is_a_failed_attempt() -> None:
    dispatcher = Dispatcher([WebhookChannel(f"http://{HOST}:{free_port()}/", SECRET,
                                            timeout=2)], retries=0)
    dispatcher.submit(Alert("overuse", "warning", "x", AT))
    stats = dispatcher.statistics()[0]
    await run_dispatcher(dispatcher, lambda: stats.dropped_failed == 1)
    assert stats.failed_attempts == 1


async def test_a_hanging_receiver_fills_the_queue_and_submit_never_waits(
        receivers: list[Receiver]) -> None:
    receiver = start_receiver(receivers, hang=True)
    dispatcher = Dispatcher([WebhookChannel(receiver.url, SECRET, timeout=30)], queue_size=3)
    stats = dispatcher.statistics()[0]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatcher.run)
        dispatcher.submit(Alert("overuse", "warning", "first", AT))
        await trio.to_thread.run_sync(receiver.got_one.wait, 5)  # in flight, hanging
        began = time.perf_counter()
        for n in range(1000):
            dispatcher.submit(Alert("overuse", "warning", f"more {n}", AT))
        took = time.perf_counter() - began
        nursery.cancel_scope.cancel()  # the stop does not wait for the hanging POST
    assert took < 0.5
    assert stats.sent == 0
    assert stats.dropped_full == 1000 - 3
    assert len(receiver.received) == 1


# ---------------------------------------------------------------------- SMTP (aiosmtpd)
class Mailbox:
    """aiosmtpd's handler: every message accepted, kept with its envelope."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: SMTP, session: Session,  # noqa: N802 - aiosmtpd's name
                          envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 OK"


@attrs.frozen
class SmtpServer:
    port: int
    mailbox: Mailbox
    client_context: ssl.SSLContext
    logins: list[tuple[bytes, bytes]]


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 that requires STARTTLS (a certificate from a
    throwaway CA) and a login as alerts/hunter2."""
    tls = make_tls_files(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tls.cert_file, tls.key_file)
    logins: list[tuple[bytes, bytes]] = []

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        logins.append((auth_data.login, auth_data.password))
        # handled=False: aiosmtpd answers a refusal with 535 (else it says nothing at all).
        return AuthResult(success=auth_data.login == b"alerts"
                          and auth_data.password == b"hunter2", handled=False)

    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname=HOST, port=port, tls_context=server_context,
                            require_starttls=True, auth_required=True, auth_require_tls=True,
                            authenticator=authenticate)
    controller.start()
    try:
        yield SmtpServer(port, mailbox, ssl.create_default_context(cafile=str(tls.ca_file)),
                         logins)
    finally:
        controller.stop()


def email_channel(smtp: SmtpServer, *, password: str = "hunter2") -> EmailChannel:
    return EmailChannel(HOST, smtp.port, "seatledger@acme.example",
                        ["noc@acme.example", "oncall@acme.example"], username="alerts",
                        password=password, context=smtp.client_context, timeout=5)


async def test_email_goes_over_starttls_with_a_login(smtp_server: SmtpServer) -> None:
    dispatcher = Dispatcher([email_channel(smtp_server)], master="acme")
    dispatcher.submit(Alert("site_cut_off", "critical", "site north is cut off", AT,
                            site="north"))
    stats = dispatcher.statistics()[0]
    await run_dispatcher(dispatcher, lambda: stats.sent == 1)

    [envelope] = smtp_server.mailbox.envelopes
    assert envelope.mail_from == "seatledger@acme.example"
    assert envelope.rcpt_tos == ["noc@acme.example", "oncall@acme.example"]
    assert isinstance(envelope.content, bytes)
    message = message_from_bytes(envelope.content)
    assert message["Subject"] == "[seatledger acme] critical: site_cut_off (north)"
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    assert "site north is cut off" in body.decode()
    assert smtp_server.logins == [(b"alerts", b"hunter2")]


async def test_email_with_a_wrong_password_is_retried_then_dropped(
        smtp_server: SmtpServer) -> None:
    dispatcher = Dispatcher([email_channel(smtp_server, password="wrong")], retries=1,
                            first_backoff=0.05)
    dispatcher.submit(Alert("overuse", "warning", "x", AT))
    stats = dispatcher.statistics()[0]
    await run_dispatcher(dispatcher, lambda: stats.dropped_failed == 1)
    assert (stats.sent, stats.failed_attempts) == (0, 2)
    assert smtp_server.mailbox.envelopes == []


async def test_email_to_a_server_with_an_untrusted_certificate_fails(
        smtp_server: SmtpServer) -> None:
    channel = email_channel(smtp_server)
    channel.context = ssl.create_default_context()  # the system's CAs: not the test CA
    dispatcher = Dispatcher([channel], retries=0)
    dispatcher.submit(Alert("overuse", "warning", "x", AT))
    stats = dispatcher.statistics()[0]
    await run_dispatcher(dispatcher, lambda: stats.dropped_failed == 1)
    assert smtp_server.logins == []  # the password never went over an unverified link


# ---------------------------------------------------------------------- settings
def write_secret(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_settings_read_both_channels(tmp_path: Path, smtp_server: SmtpServer) -> None:
    root, _vendor = licensed_data_dir(tmp_path)
    write_secret(root / "keys" / "webhook.secret", SECRET + b"\n")
    write_secret(root / "keys" / "smtp.password", b"hunter2\n")
    with (root / "seatledger.toml").open("a") as f:
        f.write(f"""
[alerts]
retries = 2
[alerts.webhook]
url = "http://{HOST}:9/hook"
secret_file = "keys/webhook.secret"
[alerts.email]
host = "{HOST}"
port = {smtp_server.port}
from = "seatledger@acme.example"
to = ["noc@acme.example"]
username = "alerts"
password_file = "keys/smtp.password"
""")
    settings = load_alert_settings(load_config(root))
    webhook, email = settings.channels
    assert isinstance(webhook, WebhookChannel) and webhook.secret == SECRET
    assert isinstance(email, EmailChannel) and email.password == "hunter2"
    assert email.starttls and settings.retries == 2


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    root, _vendor = licensed_data_dir(tmp_path)
    write_secret(root / "keys" / "webhook.secret", SECRET, mode=0o644)
    with (root / "seatledger.toml").open("a") as f:
        f.write('\n[alerts.webhook]\nurl = "http://127.0.0.1:9/"\n'
                'secret_file = "keys/webhook.secret"\n')
    with pytest.raises(ConfigError, match="readable by others"):
        load_alert_settings(load_config(root))
    done = subprocess.run([sys.executable, "-m", "seatledger.cli", "master", "--data-dir",
                           str(root), "--listen", f"{HOST}:{free_port()}"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "chmod 600" in done.stderr


# ---------------------------------------------------------------------- a real master
async def test_a_hanging_webhook_never_slows_the_grants_of_a_real_master(
        tmp_path: Path, receivers: list[Receiver]) -> None:
    """Over-use of four pools through a real master process sends four alerts to a webhook
    that hangs on the first: seats keep being granted at full pace, and the alerts that do
    not fit the queue are dropped and counted."""
    receiver = start_receiver(receivers, hang=True)
    root, _vendor = licensed_data_dir(tmp_path, "PRED=100,ACD=1,PBX=1,VIR=1")
    write_secret(root / "keys" / "webhook.secret", SECRET)
    with (root / "seatledger.toml").open("a") as f:
        f.write(f'\n[alerts]\nqueue_size = 1\ntimeout_seconds = 60\n'
                f'[alerts.webhook]\nurl = "{receiver.url}"\nsecret_file = "keys/webhook.secret"\n')
    port = free_port()
    config = load_config(root)
    app = open_ledger(config)
    bundles = [Bundle.read(enrol_site(config, app, site, master=f"{HOST}:{port}",
                                      output=tmp_path / f"{site}.bundle"))
               for site in ("north", "south")]
    app.close()

    log = (tmp_path / "master.log").open("w+b")
    master = subprocess.Popen([sys.executable, "-m", "seatledger.cli", "master", "--data-dir",
                               str(root), "--listen", f"{HOST}:{port}", "--log-format", "json"],
                              stdout=subprocess.PIPE, stderr=log, preexec_fn=die_with_parent)
    acknowledged: set[tuple[str, str]] = set()
    samples: list[int] = []
    try:
        assert master.stdout is not None
        line = await trio.to_thread.run_sync(master.stdout.readline)
        assert b"serving" in line, line + Path(log.name).read_bytes()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(load, bundles[0], port, "a", acknowledged)
            # The first over-use alert reaches the receiver, which hangs on it.
            await trio.to_thread.run_sync(receiver.got_one.wait, 30)
            nursery.start_soon(over_use_other_pools, bundles[1], port)
            for _ in range(8):  # two seconds, in quarters
                samples.append(len(acknowledged))
                await trio.sleep(0.25)
            samples.append(len(acknowledged))
            nursery.cancel_scope.cancel()
        master.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(lambda: master.wait(timeout=30)) == 0
    finally:
        master.kill()
        master.wait()
        assert master.stdout is not None
        master.stdout.close()
    log.seek(0)
    lines = [json.loads(raw) for raw in log.read().splitlines()]
    log.close()

    alert = check_signature(receiver.received[0])
    assert alert["kind"] == "overuse" and alert["text"].startswith("PRED over-use")
    assert len(receiver.received) == 1  # the channel is still stuck on the first
    # Seats were granted all along: every quarter second, hundreds more.
    steps = [b - a for a, b in zip(samples, samples[1:], strict=False)]
    assert min(steps) > 50, steps
    # Three more alerts (ACD, PBX, VIR over-use) for a queue of one: two dropped, counted.
    [summary] = [entry for entry in lines if entry.get("channel") == "webhook"
                 and entry["event"].startswith("alerts via webhook")]
    assert (summary["sent"], summary["dropped_full"], summary["queued"]) == (0, 2, 1)
    assert summary["level"] == "info" and summary["time"].endswith("Z")
    [full] = [entry for entry in lines if entry["event"].startswith("alert queue for webhook")]
    assert full["level"] == "warning" and full["kind"] == "overuse"


class SiteClient:
    """A site's session over TLS, driven by hand: Hello, Sync, then what a test sends."""

    def __init__(self, bundle: Bundle, stream: trio.SSLStream[trio.SocketStream]) -> None:
        self.bundle = bundle
        self.stream = stream
        self.conn = Connection(Role.CLIENT)

    @classmethod
    async def connect(cls, bundle: Bundle, port: int) -> SiteClient:
        ctx = client_context(bundle.ca_pem.encode(), bundle.cert_pem.encode(),
                             bundle.key_pem.encode())
        stream = trio.SSLStream(await trio.open_tcp_stream(HOST, port), ctx,
                                server_hostname=HOST)
        site = cls(bundle, stream)
        await site.send(Hello(bundle.site, 1))
        assert isinstance(await site.next_event(), Welcome)
        await site.send(Sync((), (), False))
        while not isinstance(await site.next_event(), SyncDone):
            pass
        return site

    async def send(self, message: Message) -> None:
        await self.stream.send_all(self.conn.send(message))

    async def next_event(self) -> object:
        while (event := self.conn.next_event()) is NEED_DATA:
            self.conn.receive_data(await self.stream.receive_some(65536))
        return event


async def over_use_other_pools(bundle: Bundle, port: int) -> None:
    """Two seats each of ACD, PBX and VIR (limits of one): three more over-use notices."""
    site = await SiteClient.connect(bundle, port)
    async with site.stream:
        request = 0
        for agent_class in ("ACD", "PBX", "VIR"):
            for n in range(2):
                request += 1
                await site.send(Acquire(request, f"{agent_class}-{n}", agent_class))
                while not isinstance(event := await site.next_event(), Granted):
                    assert not hasattr(event, "request_id"), event
        await trio.sleep_forever()


async def test_a_site_cut_off_and_back_is_alerted_by_a_real_master(
        tmp_path: Path, receivers: list[Receiver]) -> None:
    receiver = start_receiver(receivers)
    root = tmp_path / "data"
    init_data_dir(root, history=False)
    write_secret(root / "keys" / "webhook.secret", SECRET)
    with (root / "seatledger.toml").open("a") as f:
        f.write(f'\n[alerts.webhook]\nurl = "{receiver.url}"\n'
                'secret_file = "keys/webhook.secret"\n')
    config = load_config(root)
    port = free_port()
    with open_ledger(config) as app:
        app.issue_licence(customer="Acme", limits={"PRED": 100}, cutoff_seconds=1)
        bundle = Bundle.read(enrol_site(config, app, "north", master=f"{HOST}:{port}",
                                        output=tmp_path / "north.bundle"))
    master = subprocess.Popen([sys.executable, "-m", "seatledger.cli", "master", "--data-dir",
                               str(root), "--listen", f"{HOST}:{port}"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              preexec_fn=die_with_parent)
    try:
        assert master.stdout is not None
        assert b"serving" in await trio.to_thread.run_sync(master.stdout.readline)
        site = await SiteClient.connect(bundle, port)
        await site.stream.aclose()  # gone: cut off a second later
        await wait_until(lambda: receiver.received, timeout=30)
        site = await SiteClient.connect(bundle, port)
        await wait_until(lambda: len(receiver.received) == 2, timeout=30)
        await site.stream.aclose()
        master.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(lambda: master.wait(timeout=30)) == 0
    finally:
        master.kill()
        master.wait()
        assert master.stdout is not None
        master.stdout.close()
    cut_off, back = (check_signature(r) for r in receiver.received)
    assert (cut_off["kind"], cut_off["site"], cut_off["severity"]) == (
        "site_cut_off", "north", "critical")
    assert (back["kind"], back["site"]) == ("site_reconnected", "north")
    assert cut_off["master"] == config.origin


# ---------------------------------------------------------------------- the daemon's own failures
class Recorder(Channel):
    """A fake channel (the real port's subclass): keeps what it is sent."""

    name = "recorder"

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)


async def test_a_failed_daily_export_is_alerted(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    root = tmp_path / "data"
    init_data_dir(root, history=False)
    (tmp_path / "not-a-folder").write_text("a file where the inbox should be\n")
    with (root / "seatledger.toml").open("a") as f:
        f.write(f'\n[export]\nrecipients = ["{generate_age_identity().recipient}"]\n'
                f'time = "01:30"\n[export.sink]\nkind = "folder"\n'
                f'path = "{tmp_path / "not-a-folder"}"\nattempts = 1\n')
    config = load_config(root)
    clock = ManualClock(EXPORT_START)
    recorder = Recorder()
    alerts = Dispatcher([recorder])
    with open_ledger(config, clock=clock) as app:
        app.issue_licence(customer="Acme", limits={"PRED": 100})
        master = Master(app, clock, master_context(config, app),
                        settings=MasterSettings(worker_thread=False, refresh_interval=3600),
                        now=trio_now(EXPORT_START))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(alerts.run)
            await nursery.start(master.run, HOST, 0)
            nursery.start_soon(functools.partial(daily_exports, master, export_schedule(config),
                                                 alerts=alerts))
            await trio.sleep(24 * 3600)  # past 01:30 once
            master.stop()
            await master.stopped.wait()
            nursery.cancel_scope.cancel()
    [alert] = recorder.alerts
    assert (alert.kind, alert.severity) == ("export_failed", "critical")
    assert alert.text.startswith("daily audit export failed")


async def test_a_follower_that_keeps_failing_is_alerted(tmp_path: Path) -> None:
    """A real child process that exits 3 at once, under the daemon's supervisor: alerts for
    each restart, then for giving up; the state is still recorded for ``status``."""
    root = tmp_path / "data"
    init_data_dir(root, history=False)
    config = load_config(root)
    recorder = Recorder()
    alerts = Dispatcher([recorder])
    follower = Supervisor("read-model follower", [sys.executable, "-c", "raise SystemExit(3)"],
                          policy=RestartPolicy(first_delay=0.01, max_restarts=1),
                          on_change=child_changed(config, alerts, lambda: AT))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(alerts.run)
        await follower.run()  # returns when it gives up
        await wait_until(lambda: len(recorder.alerts) == 2)
        nursery.cancel_scope.cancel()
    restarting, gave_up = recorder.alerts
    assert (restarting.kind, restarting.severity) == ("follower_failed", "warning")
    assert (gave_up.kind, gave_up.severity) == ("follower_failed", "critical")
    assert "exited with 3; gave up after 1 restarts" in gave_up.text
    assert read_children(config)["read-model follower"]["state"] == "gave_up"
