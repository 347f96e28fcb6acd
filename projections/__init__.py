"""Read models fed from the ledger's notification log (DESIGN.md section 6).

:class:`ProjectionRunner` keeps three read models up to date, exactly once, in tables beside
the event store (a file or a schema of their own: :func:`views_url`): live status (:mod:`.live_status`), usage statements (:mod:`.usage`) and
point-in-time answers (:mod:`.point_in_time`). :mod:`.render` and :mod:`.html_report` turn
their answers into tables, CSV, JSON and a self-contained HTML report.
"""

# Each name is imported from its submodule when first used (names and modules: __init__.pyi,
# which type checkers read instead), so that a process loads only the parts it uses.
import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
