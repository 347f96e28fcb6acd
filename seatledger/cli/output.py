"""How the command line shows things: readable tables, or one JSON object with --json."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

# Stdlib only at import: the seat commands print through here and must start fast.


def say(args: Any, data: Any, text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, default=_default))
    else:
        print(text)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(type(value).__name__)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def when(value: datetime | str | None) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%SZ")


def licence(args: Any, summary: dict[str, Any]) -> None:
    """Print a licence summary (:func:`ledger.domain.summaries.licence_summary`)."""
    if getattr(args, "json", False):
        print(json.dumps(summary))
        return
    policy = (f"grace {summary['grace_seconds'] // 3600}h  "
              f"re-arm {summary['rearm_seconds'] // 86400}d"
              + (f"  ceiling {summary['ceiling_percent']}%" if summary["ceiling_percent"] else ""))
    if summary["trial_reason"]:
        print(f"TRIAL MODE: {summary['trial_reason']}")
        print("  at most 5 seats held at once and 4 campaigns among them; no over-use grace")
    if summary["licence_id"]:
        issuer = f"  issuer {summary['issuer']}" if summary.get("issuer") else ""
        print(f"licence {summary['licence_id']}  serial {summary['serial']}  "
              f"customer {summary['customer']}{issuer}")
    if summary["expires_at"]:
        left = summary.get("days_left")
        print(f"expires {when(summary['expires_at'])}"
              + ("  (EXPIRED)" if summary["expired"] else
                 f"  ({left:.0f} days left)" if left is not None else "")
              + "  " + policy)
    export = summary.get("export") or {}
    if export.get("destination"):
        print(f"exports to {export['destination']}  (tolerated {export['tolerated_days']} days "
              "without a delivery)" + ("  OVERDUE: over-use grace withdrawn"
                                      if export.get("overdue") else ""))
    upstream = summary.get("upstream")
    if upstream:
        print(f"chained under the upstream master {upstream['origin']} as its site "
              f"{upstream['site']}")
    pools = summary["pools"]
    from ledger import AGENT_CLASSES

    order = [c for c in AGENT_CLASSES if c in pools] + [n for n in pools if n not in AGENT_CLASSES]
    rows = []
    for name in order:
        p = pools[name]
        grace = p["grace"] + (" (enforced)" if p["enforced"] else "")
        rows.append((name, p["in_use"], p["limit"], "yes" if p["overuse"] else "", grace,
                     when(p["deadline"])))
    if rows:
        print(table(("pool", "in use", "limit", "over-use", "grace", "deadline"), rows))


def sites(args: Any, summary: list[dict[str, Any]]) -> None:
    """Print a sites summary (:func:`ledger.domain.summaries.sites_summary`)."""
    if getattr(args, "json", False):
        print(json.dumps(summary))
        return
    print(table(("site", "status", "seats", "local limits", "since"),
                [(d["site"], d["status"], d["seats"],
                  ",".join(f"{k}={v}" for k, v in d["local_limits"].items()), when(d["since"]))
                 for d in summary]))


def seats(args: Any, summary: dict[str, Any]) -> None:
    """Print the seats held at a site (:func:`ledger.domain.summaries.seats_summary`)."""
    if getattr(args, "json", False):
        print(json.dumps(summary))
        return
    held = summary["seats"]
    print(f"site {summary['site']}: {summary['state']}"
          + (f" since {when(summary['since'])}" if summary.get("since") else "")
          + f", {len(held)} seat(s) held")
    if held:
        print(table(("user", "class", "seat", "since", "tenant", "campaign", "flags"),
                    [(s["user"], s["agent_class"], s["seat"], when(s["since"]), s["tenant"],
                      s["campaign"],
                      ",".join(f for f in ("overuse", "offline") if s[f])) for s in held]))


def storage(args: Any, report: dict[str, Any]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(report))
        return
    print(f"store            {report['store']}")
    print(f"bytes used       {report['bytes']:,}")
    print(f"events           {report['events']:,}")
    print(f"bytes per event  {report['bytes_per_event']:.1f}")
    print(f"workload         {report['events_per_agent_per_day']} seat events per agent per day")
    print(f"per agent, 6 mo  {report['mb_per_agent_6_months']:.3f} MB "
          f"(vendor budget {report['vendor_budget_mb']} MB)")


@contextlib.contextmanager
def progress(args: Any, total: int, desc: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal (never with --json or when piped)."""
    if getattr(args, "json", False) or not sys.stderr.isatty() or total < 20000:
        yield lambda done: None
        return
    from tqdm import tqdm

    # No monitor thread: a verification forks a child only from a process of one thread.
    tqdm.monitor_interval = 0
    bar = tqdm(total=total, desc=desc, unit="rec", file=sys.stderr, leave=False)
    last = 0

    def advance(done: int) -> None:
        nonlocal last
        bar.update(done - last)
        last = done

    try:
        yield advance
    finally:
        bar.close()
