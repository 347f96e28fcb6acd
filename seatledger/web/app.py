"""The Starlette apps: the read-only dashboard (its page and one JSON document) and the
Prometheus scrape endpoint."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from projections import to_json
from seatledger.web.page import PAGE
from seatledger.web.telemetry import Telemetry

_NO_STORE = {"cache-control": "no-store"}


def dashboard_app(telemetry: Telemetry) -> Starlette:
    """``/`` the page (it polls ``/api/status`` every second), ``/api/status`` the data."""

    async def page(_: Request) -> Response:
        return HTMLResponse(PAGE, headers=_NO_STORE)

    async def status(_: Request) -> Response:
        return Response(to_json(telemetry.document()), media_type="application/json",
                        headers=_NO_STORE)

    return Starlette(routes=[Route("/", page, methods=["GET"]),
                             Route("/api/status", status, methods=["GET"])])


def metrics_app(registry: CollectorRegistry) -> Starlette:
    """``/metrics`` in Prometheus's text format."""

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
