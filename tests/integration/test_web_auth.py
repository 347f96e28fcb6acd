"""The dashboard and the metrics off 127.0.0.1 (here 127.0.0.2) of a real master: HTTPS with
a certificate from the data directory's CA, and the bearer token; refused requests get 401 or
403 and never data; plain HTTP gets nothing; a listener there without both does not start."""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
from pathlib import Path

import pytest
import trio
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect, sync_playwright

from tests.integration.test_web_dashboard import chromium
from tests.integration.web_world import CLI, deploy, free_port, get, master, wait_for_line

TOKEN = "s3cret-token-for-the-dashboard"


def listeners(web: int, metrics: int) -> str:
    return (f'[web]\nlisten = "127.0.0.2:{web}"\ntls = true\ntoken_file = "web.token"\n\n'
            f'[metrics]\nlisten = "127.0.0.2:{metrics}"\ntls = true\n'
            f'token_file = "web.token"\n')


def write_token(root: Path, mode: int = 0o600) -> None:
    path = root / "web.token"
    path.write_text(TOKEN + "\n")
    os.chmod(path, mode)


def trusting(root: Path) -> ssl.SSLContext:
    """A client that trusts only the data directory's CA and checks the address."""
    context = ssl.create_default_context(cafile=str(root / "ca" / "ca.crt"))
    assert context.check_hostname
    return context


def browse(url: str) -> None:
    """A browser (the system chromium) is refused without the login (401) or with a wrong
    one (403), and gets the dashboard with the token as HTTP Basic's password (what a
    browser asks its user for after a 401)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        try:
            # The data directory's CA is not in chromium's store: the Python clients above
            # check the certificate against it.
            anonymous = browser.new_context(ignore_https_errors=True)
            with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
                anonymous.new_page().goto(url)  # 401: headless, nobody to ask for a login
            for password, status in (("wrong", 403), (TOKEN, 200)):
                context = browser.new_context(ignore_https_errors=True, http_credentials={
                    "username": "operator", "password": password})
                page = context.new_page()
                response = page.goto(url)
                assert response is not None and response.status == status
                if status == 200:
                    expect(page.locator("#licence")).to_contain_text("Acme", timeout=30_000)
                    expect(page.locator("#in-use-PRED")).to_have_text("0")
                else:
                    assert "Acme" not in page.content()
        finally:
            browser.close()


async def test_off_localhost_the_dashboard_needs_https_and_the_token(tmp_path: Path) -> None:
    web, metrics = free_port("127.0.0.2"), free_port("127.0.0.2")
    world = deploy(tmp_path, listeners(web, metrics))
    write_token(world.root)
    with master(world) as proc:
        await wait_for_line(proc, b"serving")
        tls = trusting(world.root)
        for port, path, data in ((web, "/api/status", b"pools"), (web, "/", b"<script"),
                                 (metrics, "/metrics", b"seatledger_")):
            status, body = get("127.0.0.2", port, path, context=tls)
            assert status == 401 and data not in body, (path, status, body)
            status, body = get("127.0.0.2", port, path, context=tls, token="wrong-token")
            assert status == 403 and data not in body, (path, status, body)
            status, body = get("127.0.0.2", port, path, context=tls, token=TOKEN[:-1])
            assert status == 403 and data not in body, (path, status, body)
            status, body = get("127.0.0.2", port, path, context=tls, token=TOKEN)
            assert status == 200 and data in body, (path, status, body)
        with trio.fail_after(30):  # the pools appear once the follower made the views
            while True:
                status, body = get("127.0.0.2", web, "/api/status", context=tls, token=TOKEN)
                document = json.loads(body)
                if document["pools"]:
                    break
                await trio.sleep(0.3)
        assert [(p["pool"], p["in_use"], p["limit"]) for p in document["pools"]] == [
            ("PRED", 0, 100), ("ACD", 0, 20)]
        assert document["licence"]["customer"] == "Acme"
        await trio.to_thread.run_sync(browse, f"https://127.0.0.2:{web}/")
        # Plain HTTP to the HTTPS listener: no answer at all.
        for port in (web, metrics):
            with pytest.raises((http.client.HTTPException, ConnectionError)):
                get("127.0.0.2", port, "/api/status", token=TOKEN)
        proc.send_signal(signal.SIGTERM)
        assert await trio.to_thread.run_sync(lambda: proc.wait(timeout=30)) == 0


@pytest.mark.parametrize("settings", [
    '[web]\nlisten = "127.0.0.2:{port}"\n',
    '[web]\nlisten = "127.0.0.2:{port}"\ntls = true\n',
    '[web]\nlisten = "127.0.0.2:{port}"\ntoken_file = "web.token"\n',
    '[metrics]\nlisten = "0.0.0.0:{port}"\ntoken_file = "web.token"\n',
])
def test_a_listener_beyond_localhost_without_tls_and_token_does_not_start(
        tmp_path: Path, settings: str) -> None:
    world = deploy(tmp_path, settings.format(port=free_port()))
    write_token(world.root)
    done = subprocess.run([*CLI, "master", "--data-dir", str(world.root), "--listen",
                           f"127.0.0.1:{world.port}"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "needs tls = true and a token_file" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    world = deploy(tmp_path, listeners(free_port("127.0.0.2"), free_port("127.0.0.2")))
    write_token(world.root, 0o644)
    done = subprocess.run([*CLI, "master", "--data-dir", str(world.root), "--listen",
                           f"127.0.0.1:{world.port}"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "readable by others" in done.stderr and "Traceback" not in done.stderr
