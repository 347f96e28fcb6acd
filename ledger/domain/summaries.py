"""Plain summaries of the licence and its sites (JSON-ready: strings, numbers, lists, dicts).

What an operator is shown after a command, whether the command ran in this process or in a
running master that answered over its admin socket.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.domain.hours import US_PER_HOUR
from ledger.domain.licence import Licence, Seat
from ledger.errors import UnknownSiteError


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def licence_summary(lic: Licence, now: datetime | None = None) -> dict[str, Any]:
    """The licence as an operator sees it; ``now`` (ledger time) gives the days left."""
    days_left = None
    if now is not None and lic.in_force:
        days_left = max((lic.expires_at - now).total_seconds(), 0) / 86400
    return {
        "mode": "licensed" if lic.licensed else "trial",
        "trial_reason": trial_reason(lic),
        "licence_id": str(lic.licence_id),
        "customer": lic.customer,
        "serial": lic.serial,
        "issuer": lic.issuer or None,
        "issued_at": _iso(lic.issued_at),
        "sha256": lic.licence_sha256 or None,
        "limits": dict(lic.limits),
        "total_pred_acd": lic.total_pred_acd,
        "campaigns": lic.campaign_limit,
        "expires_at": _iso(lic.expires_at) if lic.in_force else None,
        "days_left": None if days_left is None else round(days_left, 1),
        "expired": lic.expired,
        "grace_seconds": lic.policy.grace_seconds,
        "rearm_seconds": lic.policy.rearm_seconds,
        "ceiling_percent": lic.policy.ceiling_percent,
        "cutoff_seconds": lic.cutoff_seconds,
        "upstream": (dict(zip(("origin", "site", "ca_sha256"), lic.upstream, strict=True))
                     if lic.upstream else None),
        "export": {
            "destination": lic.export_destination or None,
            "recipients": list(lic.export_recipients or []),
            "tolerated_days": lic.export_tolerated_days,
            "last_delivered_or_installed": _iso(lic.export_due_since),
            "overdue": lic.export_overdue,
        },
        "pools": {
            p.name: {"limit": p.limit, "in_use": p.in_use, "grace": str(p.state),
                     "deadline": _iso(p.deadline), "overuse": p.overuse,
                     "enforced": p.enforced}
            for p in lic.pools.values()
        },
        "hours": hours_summary(lic, now),
        "sites": sorted(lic.sites),
    }


def hours_summary(lic: Licence, now: datetime | None = None) -> dict[str, Any]:
    """Agent-hours per class licensed by hours, as of ``now`` (ledger time; default: the
    balance's own time). ``left_hours`` is negative when overdrawn."""
    out: dict[str, Any] = {}
    for cls, b in sorted((lic.hours_balances or {}).items()):
        at = max(now or b.as_of, b.as_of)
        out[cls] = {"licensed_hours": b.added_us / US_PER_HOUR,
                    "used_hours": round(b.used_at(at) / US_PER_HOUR, 4),
                    "left_hours": round(b.left_at(at) / US_PER_HOUR, 4),
                    "seats_held": b.held, "exhausted": b.left_at(at) <= 0}
    return out


def trial_reason(lic: Licence) -> str | None:
    """Why the master runs in trial mode, or None when a licence is in force."""
    if lic.licensed:
        return None
    if lic.in_force:
        return f"licence {lic.licence_id} expired at {lic.expires_at:%Y-%m-%d %H:%M}Z"
    if lic.licence_id:
        return (f"licence {lic.licence_id} was issued by the operator, not signed by the "
                "vendor (earlier versions allowed it): install one the vendor signed")
    return "no licence installed yet: send 'seatledger licence request' to the vendor"


def sites_summary(lic: Licence) -> list[dict[str, Any]]:
    return [
        {"site": s.name, "status": str(s.status), "since": _iso(s.since), "seats": len(s.seats),
         "local_limits": dict(s.local_limits), "fingerprint": s.fingerprint}
        for s in lic.sites.values()
    ]


def seats_summary(lic: Licence, name: str) -> dict[str, Any]:
    """Who holds which seat at site ``name``, since when (in seat order), and the site's
    state. Raises UnknownSiteError."""
    site = lic.sites.get(name)
    if site is None:
        raise UnknownSiteError(f"site {name!r} is not enrolled")
    return {"site": site.name, "state": str(site.status), "since": _iso(site.since),
            "seats": [seat_summary(user, seat) for user, seat in
                      sorted(site.seats.items(), key=lambda item: item[1].number)]}


def seat_summary(user: str, seat: Seat) -> dict[str, Any]:
    """One seat as an operator sees it (held, or just released by them)."""
    return {"user": user, "agent_class": seat.agent_class, "seat": seat.number,
            "tenant": seat.tenant, "campaign": seat.campaign, "since": _iso(seat.granted_at),
            "overuse": seat.overuse, "offline": seat.offline}


__all__ = ["hours_summary", "licence_summary", "seats_summary", "seat_summary",
           "sites_summary", "trial_reason"]
