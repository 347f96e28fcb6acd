"""The daily audit export: build, encrypt, sign, deliver; and the recipient's verify and replay.

See docs/export-format.md for the files and how a recipient checks them.
"""

# Each name is imported from its submodule when first used (names and modules: __init__.pyi,
# which type checkers read instead), so that a process loads only the parts it uses.
import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
