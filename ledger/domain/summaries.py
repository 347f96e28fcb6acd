"""Plain summaries of the licence and its sites (JSON-ready: strings, numbers, lists, dicts).

What an operator is shown after a command, whether the command ran in this process or in a
running master that answered over its admin socket.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.domain.licence import Licence


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def licence_summary(lic: Licence) -> dict[str, Any]:
    return {
        "licence_id": str(lic.licence_id),
        "customer": lic.customer,
        "limits": dict(lic.limits),
        "total_pred_acd": lic.total_pred_acd,
        "expires_at": _iso(lic.expires_at),
        "expired": lic.expired,
        "grace_seconds": lic.policy.grace_seconds,
        "rearm_seconds": lic.policy.rearm_seconds,
        "ceiling_percent": lic.policy.ceiling_percent,
        "cutoff_seconds": lic.cutoff_seconds,
        "pools": {
            p.name: {"limit": p.limit, "in_use": p.in_use, "grace": str(p.state),
                     "deadline": _iso(p.deadline), "overuse": p.overuse,
                     "enforced": p.enforced}
            for p in lic.pools.values()
        },
        "sites": sorted(lic.sites),
    }


def sites_summary(lic: Licence) -> list[dict[str, Any]]:
    return [
        {"site": s.name, "status": str(s.status), "since": _iso(s.since), "seats": len(s.seats),
         "local_limits": dict(s.local_limits), "fingerprint": s.fingerprint}
        for s in lic.sites.values()
    ]


__all__ = ["licence_summary", "sites_summary"]
