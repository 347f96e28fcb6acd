"""What a daemon starts in its nursery: the dashboard (``[web]``) and the metrics
(``[metrics]``) of a master, the metrics of a slave."""

from __future__ import annotations

import functools

import trio

from seatledger.config.settings import Config, HttpListener
from seatledger.master.server import Master
from seatledger.slave.connector import SlaveConnector
from seatledger.web.app import dashboard_app, metrics_app
from seatledger.web.metrics import slave_registry
from seatledger.web.serve import serve_http
from seatledger.web.telemetry import instrument


async def serve_master_web(config: Config, master: Master, web: HttpListener | None,
                           metrics: HttpListener | None, *,
                           task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                           ) -> None:
    """Gather the master's telemetry and serve the dashboard and metrics (at least one of
    them: the caller loads this module only then) until cancelled."""
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


async def serve_slave_metrics(slave: SlaveConnector, listener: HttpListener, *,
                              task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
                              ) -> None:
    await serve_http(metrics_app(slave_registry(slave)), listener, task_status=task_status)
