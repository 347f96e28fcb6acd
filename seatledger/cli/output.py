"""How the command line shows things: readable tables, or one JSON object with --json."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from ledger import AGENT_CLASSES, Licence


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


def when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%SZ")


def licence_dict(lic: Licence) -> dict[str, Any]:
    return {
        "licence_id": lic.licence_id,
        "customer": lic.customer,
        "limits": lic.limits,
        "total_pred_acd": lic.total_pred_acd,
        "expires_at": lic.expires_at,
        "expired": lic.expired,
        "grace_seconds": lic.policy.grace_seconds,
        "rearm_seconds": lic.policy.rearm_seconds,
        "ceiling_percent": lic.policy.ceiling_percent,
        "cutoff_seconds": lic.cutoff_seconds,
        "pools": {
            p.name: {"limit": p.limit, "in_use": p.in_use, "grace": p.state,
                     "deadline": p.deadline, "overuse": p.overuse, "enforced": p.enforced}
            for p in lic.pools.values()
        },
        "sites": sorted(lic.sites),
    }


def licence(args: Any, lic: Licence) -> None:
    if getattr(args, "json", False):
        print(json.dumps(licence_dict(lic), default=_default))
        return
    print(f"licence {lic.licence_id}  customer {lic.customer}")
    print(f"expires {when(lic.expires_at)}{'  (EXPIRED)' if lic.expired else ''}  "
          f"grace {lic.policy.grace_seconds // 3600}h  re-arm {lic.policy.rearm_seconds // 86400}d"
          + (f"  ceiling {lic.policy.ceiling_percent}%" if lic.policy.ceiling_percent else ""))
    order = [c for c in AGENT_CLASSES if c in lic.pools] + [
        n for n in lic.pools if n not in AGENT_CLASSES]
    rows = []
    for name in order:
        p = lic.pools[name]
        grace = p.state + (" (enforced)" if p.enforced else "")
        rows.append((name, p.in_use, p.limit, "yes" if p.overuse else "", grace, when(p.deadline)))
    print(table(("pool", "in use", "limit", "over-use", "grace", "deadline"), rows))


def sites(args: Any, lic: Licence) -> None:
    data = [
        {"site": s.name, "status": s.status, "since": s.since, "seats": len(s.seats),
         "local_limits": s.local_limits, "fingerprint": s.fingerprint}
        for s in lic.sites.values()
    ]
    if getattr(args, "json", False):
        print(json.dumps(data, default=_default))
        return
    print(table(("site", "status", "seats", "local limits", "since"),
                [(d["site"], d["status"], d["seats"],
                  ",".join(f"{k}={v}" for k, v in d["local_limits"].items()), when(d["since"]))
                 for d in data]))


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
