"""Children of the master end with it, even a SIGKILLed one: the kernel sends them SIGTERM
when the parent dies (``PR_SET_PDEATHSIG``, Linux), and a watcher thread checks the parent
twice a second as well (other systems, and a parent that died before the child was set up).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def watch_parent(parent: int, stop: Callable[[], None]) -> None:
    """Call ``stop`` (again and again) once ``parent`` is no longer this process's parent."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        while True:  # keep saying it: a follow() starting now must stop too
            stop()
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="orphan-watch").start()


__all__ = ["die_with_parent", "watch_parent"]
