from .daemon import serve_master_web, serve_slave_metrics
from .listeners import master_listeners, slave_metrics_listener
from .metrics import MasterMetrics, slave_registry
from .serve import serve_http
from .telemetry import Telemetry, instrument

__all__ = ["MasterMetrics", "Telemetry", "instrument", "master_listeners", "serve_http",
           "serve_master_web", "serve_slave_metrics", "slave_metrics_listener",
           "slave_registry"]
