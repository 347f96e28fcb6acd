"""The read-only web dashboard and the Prometheus metrics of the master, and the slave's
metrics: hypercorn's trio worker serving Starlette apps inside the daemon's nursery.

* :mod:`.telemetry` gathers what is shown, once a second; :mod:`.metrics` its collectors
  and the hot-path counters; :mod:`.feed` recent notices and refusals;
* :mod:`.app` the Starlette apps, :mod:`.page` the dashboard's page;
* :mod:`.serve` one listener (TLS and the bearer token off 127.0.0.1, :mod:`.guard`);
* :mod:`.daemon` what the master and slave daemons start.
"""

from .daemon import (
    master_listeners,
    serve_master_web,
    serve_slave_metrics,
    slave_metrics_listener,
)
from .metrics import MasterMetrics, slave_registry
from .serve import serve_http
from .telemetry import Telemetry, instrument

__all__ = ["MasterMetrics", "Telemetry", "instrument", "master_listeners", "serve_http",
           "serve_master_web", "serve_slave_metrics", "slave_metrics_listener",
           "slave_registry"]
