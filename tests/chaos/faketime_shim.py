"""Run ``seatledger`` with libfaketime preloaded (see ``harness.faketime_env``).

``python tests/chaos/faketime_shim.py master --data-dir D ...`` is ``seatledger master ...``
on a wall clock that the harness steps through libfaketime's offset file. Two mends:

* libfaketime 0.9.10 with the monotonic clock excluded breaks ``time.sleep`` on Python 3.11
  (``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`` fails with EINVAL:
  wolfcw/libfaketime#426), so this process sleeps with ``select`` instead.
* Child processes (the read-model follower) run on the real clock: the library is loaded
  here already, so it is dropped from the environment they inherit.
"""

from __future__ import annotations

import os
import select
import sys
import time
from typing import SupportsIndex


def _sleep(seconds: float | SupportsIndex) -> None:
    select.select([], [], [], float(seconds))


if __name__ == "__main__":
    os.environ.pop("LD_PRELOAD", None)
    time.sleep = _sleep
    from seatledger.cli.main import main

    sys.exit(main(sys.argv[1:]))
