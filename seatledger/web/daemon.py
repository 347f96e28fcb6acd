"""What a daemon starts in its nursery: the dashboard (``[web]``) and the metrics
(``[metrics]``) of a master, the metrics of a slave."""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

import trio

from seatledger.config.settings import Config, ConfigError, HttpListener, http_listener
from seatledger.master.server import Master
from seatledger.slave.connector import SlaveConnector
from seatledger.web.app import dashboard_app, metrics_app
from seatledger.web.guard import read_token
from seatledger.web.metrics import slave_registry
from seatledger.web.serve import serve_http
from seatledger.web.telemetry import instrument

WEB_LISTEN = "127.0.0.1:7680"
METRICS_LISTEN = "127.0.0.1:7681"
SLAVE_METRICS_LISTEN = "127.0.0.1:7682"


def master_listeners(config: Config) -> tuple[HttpListener | None, HttpListener | None]:
    """The master's ``[web]`` and ``[metrics]`` listeners (None: not configured), checked.

    Raises:
        ConfigError: a wrong value, a missing or open token file.
    """
    web = http_listener(config.raw, "web", WEB_LISTEN, config.root)
    metrics = http_listener(config.raw, "metrics", METRICS_LISTEN, config.root)
    for listener in (web, metrics):
        if listener is not None and listener.token_file is not None:
            read_token(listener.token_file)
    return web, metrics


async def serve_master_web(config: Config, master: Master, web: HttpListener | None,
                           metrics: HttpListener | None, *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                           ) -> None:
    """Gather the master's telemetry and serve the dashboard and metrics until cancelled."""
    if web is None and metrics is None:
        task_status.started()
        return
    telemetry = instrument(master)
    await telemetry.refresh()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(telemetry.run)
        if web is not None:
            await nursery.start(functools.partial(serve_http, dashboard_app(telemetry), web,
                                                  ca_dir=config.layout.ca_dir))
        if metrics is not None:
            await nursery.start(functools.partial(
                serve_http, metrics_app(telemetry.metrics.registry), metrics,
                ca_dir=config.layout.ca_dir))
        task_status.started()


def slave_metrics_listener(state_dir: Path, listen: str | None) -> HttpListener | None:
    """``--metrics-listen``, else ``[metrics]`` of ``slave.toml`` in the state directory.

    Raises:
        ConfigError: a wrong value.
    """
    if listen is not None:
        return http_listener({"metrics": {"listen": listen}}, "metrics", listen, state_dir)
    path = state_dir / "slave.toml"
    if not path.exists():
        return None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    return http_listener(raw, "metrics", SLAVE_METRICS_LISTEN, state_dir)


async def serve_slave_metrics(slave: SlaveConnector, listener: HttpListener, *,
                              task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                              ) -> None:
    await serve_http(metrics_app(slave_registry(slave)), listener, task_status=task_status)
