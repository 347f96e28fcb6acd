"""The terms of a vendor-signed licence: what a licence file says, as one value.

The vendor writes these terms as the TOML text of a licence file (``docs/licence-format.md``)
and signs that text; :func:`render_terms` and :func:`parse_terms` are the two directions, and
``parse_terms(render_terms(t)) == t``. The signature is checked outside the domain (by the
install use case, against the vendor key the master pinned): the domain receives terms that
verified, and decides whether they may be installed *here, now* (:func:`check_installable`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import attrs

from ledger.domain.values import (
    AGENT_CLASSES,
    DEFAULT_POLICY,
    MAX_LICENCE_DAYS,
    MIN_LICENCE_SEATS,
    GracePolicy,
    licence_total,
    utc,
)
from ledger.errors import LicenceError, LicenceTooSmallError

FORMAT = "seatledger-licence/1"
DEFAULT_TOLERATED_DAYS = 30
# How far a licence's issue time may lie ahead of the master's recorded time (clock skew
# between the vendor's workstation and the customer's master).
ISSUE_SKEW = timedelta(minutes=10)

__all__ = ["DEFAULT_TOLERATED_DAYS", "FORMAT", "ISSUE_SKEW", "ExportObligation",
           "LicenceBindingError", "LicenceDatesError", "LicenceFileError",
           "LicenceSerialError", "LicenceTerms", "check_installable", "check_terms",
           "format_duration", "parse_terms", "render_terms"]


class LicenceFileError(LicenceError):
    """A licence file's terms are malformed: not TOML, a missing or unknown key, a bad value."""


class LicenceBindingError(LicenceError):
    """The licence is bound to another master."""


class LicenceSerialError(LicenceError):
    """The licence's serial is not above the installed one."""


class LicenceDatesError(LicenceError):
    """The licence is expired, issued in the future, or runs for more than a year."""


@attrs.frozen
class ExportObligation:
    """What the licence obliges the master to export, and where to."""

    recipients: tuple[str, ...]
    tolerated_days: int = DEFAULT_TOLERATED_DAYS
    destination: str = ""  # a URL: sftp://, ftps://, ftp:// or file://; "" leaves it to config
    host_key: str = ""  # SFTP: the server's SHA256:... host-key fingerprint


@attrs.frozen
class LicenceTerms:
    """Everything a vendor-signed licence sets."""

    customer: str
    licence_id: str
    serial: int
    issued_at: datetime
    expires_at: datetime
    limits: Mapping[str, int]
    master_origin: str
    master_key: str  # fingerprint of the master's signing public key: "sha256:<hex>"
    export: ExportObligation
    total_pred_acd: int | None = None
    policy: GracePolicy = DEFAULT_POLICY
    campaigns: int | None = None  # at most this many distinct campaigns among seats held
    # Agent-hours per class, counted down while its seats are held (ledger.domain.hours);
    # a class may have hours, a concurrent limit, or both.
    hours: Mapping[str, int] = attrs.field(factory=dict)

    @property
    def total(self) -> int:
        return licence_total(self.limits, self.total_pred_acd)


_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def format_duration(seconds: int) -> str:
    """172800 -> '48h', 2592000 -> '30d': the largest unit that divides it (days only from
    three days up, so that the usual grace period reads as 48h)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0 and (unit != "d" or seconds >= 3 * 86400):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _duration(value: object, key: str) -> int:
    m = _DURATION.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise LicenceFileError(f"{key} must be a duration such as \"48h\" or \"30d\", "
                               f"not {value!r}")
    return int(m.group(1)) * _UNIT[m.group(2)]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _instant(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_terms(terms: LicenceTerms) -> str:
    """The licence file's terms, as the vendor signs them (TOML, one key per line)."""
    lines = [
        "# seatledger licence, issued and signed by the vendor. Any change voids the signature.",
        f"format = {_quote(FORMAT)}",
        f"customer = {_quote(terms.customer)}",
        f"licence_id = {_quote(terms.licence_id)}",
        f"serial = {terms.serial}",
        f"issued_at = {_instant(terms.issued_at)}",
        f"expires_at = {_instant(terms.expires_at)}",
    ]
    if terms.campaigns is not None:
        lines.append(f"campaigns = {terms.campaigns}")
    lines += ["", "[seats]"]
    lines += [f"{c} = {terms.limits[c]}" for c in AGENT_CLASSES if c in terms.limits]
    if terms.total_pred_acd is not None:
        lines.append(f"total_pred_acd = {terms.total_pred_acd}")
    if terms.hours:
        lines += ["", "[hours]"]
        lines += [f"{c} = {terms.hours[c]}" for c in AGENT_CLASSES if c in terms.hours]
    policy = terms.policy
    lines += ["", "[grace]", f"period = {_quote(format_duration(policy.grace_seconds))}",
              f"rearm = {_quote(format_duration(policy.rearm_seconds))}"]
    if policy.ceiling_percent is not None:
        lines.append(f"ceiling_percent = {policy.ceiling_percent}")
    lines += ["", "[master]", f"origin = {_quote(terms.master_origin)}",
              f"key = {_quote(terms.master_key)}"]
    export = terms.export
    recipients = ", ".join(_quote(r) for r in export.recipients)
    lines += ["", "[export]", f"recipients = [{recipients}]",
              f"tolerated_days = {export.tolerated_days}"]
    if export.destination:
        lines.append(f"destination = {_quote(export.destination)}")
    if export.host_key:
        lines.append(f"host_key = {_quote(export.host_key)}")
    return "\n".join(lines) + "\n"


_TOP = {"format", "customer", "licence_id", "serial", "issued_at", "expires_at", "campaigns",
        "seats", "hours", "grace", "master", "export"}
_SEATS = set(AGENT_CLASSES) | {"total_pred_acd"}
_GRACE = {"period", "rearm", "ceiling_percent"}
_MASTER = {"origin", "key"}
_EXPORT = {"recipients", "tolerated_days", "destination", "host_key"}


def parse_terms(text: str) -> LicenceTerms:
    """Read a licence file's terms.

    Raises:
        LicenceFileError: one line saying what is malformed.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise LicenceFileError(f"the licence terms are not valid TOML ({e})") from None
    _known(doc, _TOP, "the licence")
    if doc.get("format") != FORMAT:
        raise LicenceFileError(f"not a seatledger licence (format {doc.get('format')!r}, "
                               f"expected {FORMAT!r})")
    seats = _table(doc, "seats", _SEATS)
    grace = _table(doc, "grace", _GRACE)
    master = _table(doc, "master", _MASTER)
    export = _table(doc, "export", _EXPORT)
    recipients = export.get("recipients")
    if (not isinstance(recipients, list) or not recipients
            or not all(isinstance(r, str) and r.startswith("age1") for r in recipients)):
        raise LicenceFileError("[export] recipients must list the vendor's age keys (age1...)")
    limits = {c: _count(seats[c], f"[seats] {c}") for c in AGENT_CLASSES if c in seats}
    if not limits:
        raise LicenceFileError("[seats] names no agent class")
    hours_table = doc.get("hours", {})
    if not isinstance(hours_table, dict):
        raise LicenceFileError("[hours] must be a table of agent-hours per class")
    _known(hours_table, set(AGENT_CLASSES), "[hours]")
    hours = {c: _count(hours_table[c], f"[hours] {c}", minimum=1)
             for c in AGENT_CLASSES if c in hours_table}
    return LicenceTerms(
        customer=_text(doc, "customer"),
        licence_id=_text(doc, "licence_id"),
        serial=_count(doc.get("serial"), "serial", minimum=1),
        issued_at=_datetime(doc, "issued_at"),
        expires_at=_datetime(doc, "expires_at"),
        limits=limits,
        total_pred_acd=_optional_count(seats.get("total_pred_acd"), "[seats] total_pred_acd"),
        policy=GracePolicy(
            _duration(grace.get("period", "48h"), "[grace] period"),
            _duration(grace.get("rearm", "30d"), "[grace] rearm"),
            _optional_count(grace.get("ceiling_percent"), "[grace] ceiling_percent"),
        ),
        campaigns=_optional_count(doc.get("campaigns"), "campaigns", minimum=1),
        hours=hours,
        master_origin=_text(master, "origin", "[master] "),
        master_key=_text(master, "key", "[master] "),
        export=ExportObligation(
            tuple(recipients),
            _count(export.get("tolerated_days", DEFAULT_TOLERATED_DAYS),
                   "[export] tolerated_days", minimum=1),
            str(export.get("destination", "")),
            str(export.get("host_key", "")),
        ),
    )


def _known(table: Mapping[str, Any], keys: set[str], where: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise LicenceFileError(f"{where} has unknown key(s): {', '.join(unknown)}")


def _table(doc: Mapping[str, Any], name: str, keys: set[str]) -> Mapping[str, Any]:
    table = doc.get(name)
    if not isinstance(table, dict):
        raise LicenceFileError(f"the licence has no [{name}] table")
    _known(table, keys, f"[{name}]")
    return table


def _text(doc: Mapping[str, Any], key: str, where: str = "") -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise LicenceFileError(f"{where}{key} is missing or empty")
    return value


def _count(value: object, key: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise LicenceFileError(f"{key} must be a whole number of at least {minimum}, "
                               f"not {value!r}")
    return value


def _optional_count(value: object, key: str, minimum: int = 0) -> int | None:
    return None if value is None else _count(value, key, minimum)


def _datetime(doc: Mapping[str, Any], key: str) -> datetime:
    value = doc.get(key)
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise LicenceFileError(f"{key} must be a UTC date and time such as "
                               f"2026-12-01T10:00:00Z, not {value!r}")
    return utc(value)


def check_terms(terms: LicenceTerms) -> None:
    """The rules a licence must keep wherever it is: size, length, grace parameters.

    Raises:
        LicenceTooSmallError, LicenceDatesError, LicenceError.
    """
    if terms.total < MIN_LICENCE_SEATS:
        raise LicenceTooSmallError(
            f"a master/slave licence needs at least {MIN_LICENCE_SEATS} seats; "
            f"this one totals {terms.total}")
    if terms.expires_at <= terms.issued_at:
        raise LicenceDatesError("the licence expires before it was issued")
    if terms.expires_at > terms.issued_at + timedelta(days=MAX_LICENCE_DAYS):
        raise LicenceDatesError("a licence runs for at most one year from its issue")
    for c, n in terms.hours.items():
        if c not in AGENT_CLASSES:
            raise LicenceError(f"unknown agent class {c!r} in [hours]")
        if n <= 0:
            raise LicenceError(f"[hours] {c} must be a positive number of agent-hours")
    policy = terms.policy
    if policy.grace_seconds <= 0:
        raise LicenceError("the grace period must be positive")
    if policy.ceiling_percent is not None and policy.ceiling_percent < 100:
        raise LicenceError("the over-use ceiling is a percentage of the limit, at least 100")


def check_installable(terms: LicenceTerms, now: datetime, *, master_key: str,
                      installed_serial: int) -> None:
    """Whether ``terms`` (already verified as the vendor's) may be installed on the master
    whose signing key has fingerprint ``master_key``, at recorded time ``now``.

    Raises:
        LicenceBindingError, LicenceSerialError, LicenceDatesError, LicenceTooSmallError,
        LicenceError: one line saying why not.
    """
    if terms.master_key != master_key:
        raise LicenceBindingError(
            f"the licence is bound to another master ({terms.master_key}; "
            f"this master is {master_key})")
    if terms.serial <= installed_serial:
        raise LicenceSerialError(
            f"licence serial {terms.serial} is not above the installed serial "
            f"{installed_serial}")
    if terms.issued_at > now + ISSUE_SKEW:
        raise LicenceDatesError(
            f"the licence is issued at {_instant(terms.issued_at)}, in the future of this "
            f"master's time {_instant(now)}")
    if terms.expires_at <= now:
        raise LicenceDatesError(f"the licence expired at {_instant(terms.expires_at)}")
    check_terms(terms)
