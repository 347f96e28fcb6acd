"""The alert: one thing a person should hear about, as a small frozen value."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import attrs


@attrs.frozen
class Alert:
    """``kind`` says what happened (``overuse``, ``enforcement``, ``licence``, ``export``,
    ``site_cut_off``, ``site_reconnected``, ``export_failed``, ``follower_failed``);
    ``severity`` is ``info``, ``warning`` or ``critical``."""

    kind: str
    severity: str
    text: str
    at: datetime
    site: str | None = None
    master: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "severity": self.severity, "text": self.text,
                "at": self.at.isoformat(), "site": self.site, "master": self.master}

    def to_json(self) -> bytes:
        """The webhook's body: one JSON object, keys sorted (what the signature covers)."""
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")).encode()

    @property
    def subject(self) -> str:
        where = f" ({self.site})" if self.site else ""
        return f"[seatledger {self.master}] {self.severity}: {self.kind}{where}"


__all__ = ["Alert"]
