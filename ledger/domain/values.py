"""Value types and constants of the licensing domain."""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any, TypeVar

import attrs

from ledger.errors import BadSiteNameError

AGENT_CLASSES: tuple[str, ...] = ("PRED", "ACD", "PBX", "VIR")
COMBINED_POOL = "PRED+ACD"
COMBINED_MEMBERS: tuple[str, ...] = ("PRED", "ACD")
MIN_LICENCE_SEATS = 100
MAX_LICENCE_DAYS = 366  # "at most one year", a leap year included

# Without a valid licence (none installed, or expired) the master admits this much.
TRIAL_SEATS = 5
TRIAL_CAMPAIGNS = 4
# Days before expiry at which every site is warned.
EXPIRY_WARNING_DAYS: tuple[int, ...] = (60, 30, 7, 1)

DEFAULT_GRACE_SECONDS = 48 * 3600
DEFAULT_REARM_SECONDS = 30 * 86400
DEFAULT_CUTOFF_SECONDS = 15 * 60


class RefusalReason(StrEnum):
    """Why a seat was refused; stored in SeatRefused.reason."""

    LIMIT_ENFORCED = "limit_enforced"
    OVERUSE_CEILING = "overuse_ceiling"
    SITE_LIMIT = "site_limit"
    LICENCE_EXPIRED = "licence_expired"  # recorded by earlier versions; now UNLICENSED
    UNLICENSED = "unlicensed"  # no valid licence: beyond the trial rule
    EXPORT_OVERDUE = "export_overdue"  # over-limit while the export obligation is breached
    CAMPAIGN_LIMIT = "campaign_limit"
    CLASS_NOT_LICENSED = "class_not_licensed"
    UNKNOWN_SITE = "unknown_site"
    SITE_REVOKED = "site_revoked"
    HOURS_EXHAUSTED = "hours_exhausted"  # the class's pre-paid agent-hours are used up


class ReleaseReason(StrEnum):
    """Why a seat was released; stored in SeatReleased.reason."""

    LOGOFF = "logoff"
    RECONCILED = "reconciled"
    SITE_CUT_OFF = "site_cut_off"
    OPERATOR = "operator"
    EXPIRED = "expired"


class Severity(IntEnum):
    """Abuse-notice severities, rising as the grace deadline nears; stored as the int.

    A pool that has had no notice yet holds severity 0, which is not a member.
    """

    OPENED = 1
    DAY_LEFT = 2
    HOURS_LEFT = 3
    EXPIRED = 4


SEVERITY_NAMES: Mapping[int, str] = {
    Severity.OPENED: "opened", Severity.DAY_LEFT: "24h left",
    Severity.HOURS_LEFT: "4h left", Severity.EXPIRED: "expired",
}


class SiteState(StrEnum):
    """A site's connection status as the master sees it (stored in snapshots as the string)."""

    NEW = "new"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    CUT_OFF = "cut_off"
    REVOKED = "revoked"


# Site names travel in certificates as DNS names, so they are DNS labels.
_SITE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check_site_name(name: str) -> str:
    """Return ``name`` if it can name a site: a DNS label (letters, digits and inner hyphens,
    at most 63 characters), as it must appear in the site's certificate.

    Raises:
        BadSiteNameError: it cannot.
    """
    if not _SITE_NAME.fullmatch(name):
        raise BadSiteNameError(
            f"bad site name {name!r}: use letters, digits and inner hyphens (at most 63)"
        )
    return name


@attrs.frozen
class GracePolicy:
    """Per-licence grace parameters (DESIGN.md section 3)."""

    grace_seconds: int = DEFAULT_GRACE_SECONDS
    rearm_seconds: int = DEFAULT_REARM_SECONDS
    ceiling_percent: int | None = None


def utc(dt: datetime) -> datetime:
    """Return an aware UTC datetime (naive input is taken to be UTC)."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """'48h' -> 172800 seconds. Raises ValueError with a readable message."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"bad duration {text!r}: use a number with s, m, h, d or w, e.g. 48h")
    return int(m.group(1)) * _UNIT[m.group(2)]


def parse_limits(text: str) -> dict[str, int]:
    """'PRED=150,ACD=50' -> {'PRED': 150, 'ACD': 50}. Raises ValueError."""
    limits: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip().upper()
        if not sep or name not in AGENT_CLASSES:
            raise ValueError(
                f"bad seat limit {part!r}: use CLASS=N with CLASS one of {', '.join(AGENT_CLASSES)}"
            )
        try:
            count = int(value)
        except ValueError:
            raise ValueError(f"bad seat count in {part!r}: not a whole number") from None
        if count < 0:
            raise ValueError(f"bad seat count in {part!r}: negative")
        limits[name] = count
    if not limits:
        raise ValueError("no seat limits given, e.g. PRED=150,ACD=50")
    return limits


def licence_total(limits: Mapping[str, int], total_pred_acd: int | None) -> int:
    """Total seats of a licence, counting a PRED+ACD cap where it bites. Classes licensed
    by hours alone (no concurrent limit) count nothing towards it."""
    pred_acd = sum(limits.get(c, 0) for c in COMBINED_MEMBERS)
    if total_pred_acd is not None:
        pred_acd = min(pred_acd, total_pred_acd)
    others = sum(n for c, n in limits.items() if c not in COMBINED_MEMBERS)
    return pred_acd + others


def format_limits(limits: Mapping[str, int]) -> str:
    return ",".join(f"{c}={limits[c]}" for c in AGENT_CLASSES if c in limits)


DEFAULT_POLICY = GracePolicy()


_V = TypeVar("_V")


def pickled_as_fields(cls: type[_V]) -> type[_V]:
    """Class decorator for a frozen attrs value that crosses a process boundary once per
    request (the writer process's commands and outcomes): it is pickled as its class and
    its init fields, read by one C-level getter, instead of attrs' slot-by-slot state (a
    Python comprehension to pickle it, another to unpickle it)."""
    names = [a.name for a in attrs.fields(cls) if a.init]  # type: ignore[arg-type]
    getter = operator.attrgetter(*names)
    if len(names) == 1:
        def reduce(self: Any) -> tuple[Any, ...]:
            return cls, (getter(self),)
    else:
        def reduce(self: Any) -> tuple[Any, ...]:
            return cls, getter(self)
    setattr(cls, "__reduce__", reduce)  # noqa: B010 (mypy would refuse the assignment)
    return cls
