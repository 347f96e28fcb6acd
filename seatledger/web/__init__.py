"""The read-only web dashboard and the Prometheus metrics of the master, and the slave's
metrics: hypercorn's trio worker serving Starlette apps inside the daemon's nursery.

* :mod:`.telemetry` gathers what is shown, once a second; :mod:`.metrics` its collectors
  and the hot-path counters; :mod:`.feed` recent notices and refusals;
* :mod:`.app` the Starlette apps, :mod:`.page` the dashboard's page;
* :mod:`.serve` one listener (TLS and the bearer token off 127.0.0.1, :mod:`.guard`);
* :mod:`.daemon` what the master and slave daemons start.
"""

# Each name is imported from its submodule when first used (names and modules: __init__.pyi,
# which type checkers read instead), so that a process loads only the parts it uses.
import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
