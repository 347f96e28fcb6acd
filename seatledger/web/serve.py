"""Hypercorn's trio worker serving an ASGI app on one configured listener, in the caller's
nursery: plain HTTP on 127.0.0.1; elsewhere HTTPS (a certificate the operator gives, or one
issued from the data directory's CA) and the bearer token."""

from __future__ import annotations

import logging
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from starlette.types import ASGIApp

from seatledger.config.ca import load_ca, master_names
from seatledger.config.keys import write_replacing
from seatledger.config.settings import ConfigError, HttpListener
from seatledger.web.guard import BearerGuard, read_token
from transport.pki import issue_master_certificate

log = logging.getLogger("seatledger.web")


def guarded(app: ASGIApp, listener: HttpListener) -> ASGIApp:
    """``app`` behind the listener's token, if it has one. Raises ConfigError."""
    if listener.token_file is None:
        return app
    return BearerGuard(app, read_token(listener.token_file))


def certificate_for(listener: HttpListener, ca_dir: Path | None) -> tuple[Path, Path] | None:
    """The listener's certificate and key: the operator's, or (once) issued from the CA in
    ``ca_dir`` for the listener's address. None without TLS. Raises ConfigError."""
    if not listener.tls:
        return None
    if listener.cert_file is not None and listener.key_file is not None:
        return listener.cert_file, listener.key_file
    if ca_dir is None:
        raise ConfigError(f"[{listener.section}] tls = true needs cert_file and key_file here")
    cert, key = ca_dir / f"{listener.section}.crt", ca_dir / f"{listener.section}.key"
    if not (cert.exists() and key.exists()):
        try:
            dns, ips = master_names([listener.host])
            issued = issue_master_certificate(load_ca(ca_dir), dns_names=dns,
                                              ip_addresses=ips,
                                              common_name=f"seatledger {listener.section}")
        except (OSError, ValueError) as e:
            raise ConfigError(f"[{listener.section}]: cannot issue a certificate: {e}") from e
        write_replacing(key, issued.key_pem)
        write_replacing(cert, issued.cert_pem)
    return cert, key


async def serve_http(app: ASGIApp, listener: HttpListener, *, ca_dir: Path | None = None,
                     task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                     ) -> None:
    """Serve ``app`` on ``listener`` until cancelled; ``task_status`` gets the bound URLs.

    Raises:
        ConfigError: no usable certificate or token.
        OSError: the address cannot be bound.
    """
    config = HypercornConfig()
    host = f"[{listener.host}]" if ":" in listener.host else listener.host
    config.bind = [f"{host}:{listener.port}"]
    pair = certificate_for(listener, ca_dir)
    if pair is not None:
        config.certfile, config.keyfile = str(pair[0]), str(pair[1])
    config.accesslog = None
    config.errorlog = log
    config.graceful_timeout = 1.0
    config.include_server_header = False
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(_serve, guarded(app, listener), config)
        log.info("%s: serving on %s", listener.section, ", ".join(urls))
        task_status.started(urls)


async def _serve(app: ASGIApp, config: HypercornConfig, *,
                 task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    await serve(app, config, task_status=task_status)  # type: ignore[arg-type]
