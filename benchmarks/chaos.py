"""Chaos benchmark (issue 9, section 6): the chaos suite's scenarios with the full counts.

Prints one JSON object, a key per scenario, each with the figures measured:

* ``sigkill``: the master SIGKILLed under load (three sites pipelining acquires) ``--rounds``
  times (default 20); acknowledged grants and how many of them the ledger lost; restart
  times; ``audit verify`` afterwards.
* ``proxy``: a real slave behind a fault-injecting proxy (cut, blackhole, delay in turn:
  three per five rounds) while a dialler works its socket; seats on each side afterwards.
* ``operator``: operator commands (enrol, revoke, amend; five per round: 100) under load.
* ``clock_step``: a master under libfaketime, its wall clock set back 10 h while serving
  and at a restart; ClockStepped records and whether recorded time went backwards.
* ``flood``: unauthenticated TCP connections (``--flood``, default 20,000 attempts) from
  127.0.0.2 and up; a real site's first grant through a fresh session meanwhile; RSS.
* ``full_disk``: the data directory on ``$SEATLEDGER_TEST_SMALL_FS``, filled while serving.

A scenario that cannot run here (no libfaketime, no small file system) or that fails
reports ``{"error": ...}``; the others still run. The harness is the chaos suite's
(``tests/chaos``). Human-readable progress goes to stderr.

Usage: python benchmarks/chaos.py [--rounds 20] [--flood 20000] [--only NAME ...] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

# A script in benchmarks/ puts benchmarks/ first on the import path, where ledger.py would
# shadow the ledger package: drop the folder and put the repository root first instead.
_HERE = Path(__file__).parent.resolve()
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import attrs  # noqa: E402
import trio  # noqa: E402

from tests.chaos.harness import Counts, DaemonFailed  # noqa: E402
from tests.chaos.scenarios import (  # noqa: E402
    MissingEnvironment,
    clock_step_back,
    connection_flood,
    faulty_link,
    full_disk,
    operator_under_load,
    sigkill_under_load,
)

SCENARIOS = ("sigkill", "proxy", "operator", "clock_step", "flood", "full_disk")


def _scenarios(counts: Counts) -> dict[str, Callable[[Path], Awaitable[Any]]]:
    return {
        "sigkill": lambda where: sigkill_under_load(where, counts.kills),
        "proxy": lambda where: faulty_link(where, counts.proxy_faults),
        "operator": lambda where: operator_under_load(where, counts.operator_commands),
        "clock_step": lambda where: clock_step_back(where, hours=10),
        "flood": lambda where: connection_flood(where, counts.flood_connections),
        "full_disk": lambda where: full_disk(where),
    }


# What a scenario that could not finish raises (inside trio's exception groups).
_FAILURES = (MissingEnvironment, trio.TooSlowError, AssertionError, OSError, DaemonFailed)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    return [leaf for e in group.exceptions
            for leaf in (_leaves(e) if isinstance(e, BaseExceptionGroup) else [e])]


async def _run(names: list[str], counts: Counts, root: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    scenarios = _scenarios(counts)
    for name in names:
        where = root / name
        where.mkdir()
        print(f"chaos: {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            report = await scenarios[name](where)
        except* _FAILURES as group:
            # One scenario failing must not hide the figures of the others.
            results[name] = {"error": "; ".join(f"{type(e).__name__}: {e}"
                                                for e in _leaves(group))}
        else:
            results[name] = attrs.asdict(report)
        print(f"chaos: {name} done in {time.monotonic() - started:.0f}s", file=sys.stderr,
              flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="SIGKILLs (and the scale of "
                        "the other scenarios: see tests/chaos/harness.py Counts)")
    parser.add_argument("--flood", type=int, default=20_000, help="flood connection attempts")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args()
    counts = Counts.for_rounds(args.rounds, flood_connections=args.flood)
    work = Path(tempfile.mkdtemp(prefix="seatledger-chaos-"))
    # The operator commands run in this process and print; only the JSON goes to stdout.
    with redirect_stdout(sys.stderr):
        results = trio.run(_run, args.only, counts, work)
    if args.keep:
        print(f"chaos: kept {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({**results, "counts": attrs.asdict(counts),
                      "machine": {"python": platform.python_version(),
                                  "cpus": _cpus()}}))


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
