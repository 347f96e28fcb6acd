"""Where exports are delivered: the :class:`Sink` port and its adapters.

Every sink writes under a temporary name and renames, refuses to overwrite different content,
treats identical content as already delivered, and retries transient failures with backoff.
"""

# Each name is imported from its submodule when first used (names and modules: __init__.pyi,
# which type checkers read instead), so that a process loads only the parts it uses.
import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
