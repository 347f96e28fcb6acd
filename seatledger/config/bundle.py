"""A site's connection bundle: its certificate and key, the CA, and the masters' addresses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs

from seatledger.config.settings import ConfigError


@attrs.frozen
class Bundle:
    site: str
    ca_pem: str
    cert_pem: str
    key_pem: str
    primary: str
    secondary: str | None = None

    def addresses(self) -> list[tuple[str, int]]:
        return [parse_address(a) for a in (self.primary, self.secondary) if a]

    def write(self, path: Path) -> None:
        """Write the bundle, readable by the owner only (it holds the site's private key)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(attrs.asdict(self), f, indent=1)
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: Path) -> Bundle:
        """Raises ConfigError with a one-line reason."""
        try:
            data = json.loads(path.read_text())
            return cls(**{k: data[k] for k in ("site", "ca_pem", "cert_pem", "key_pem", "primary")},
                       secondary=data.get("secondary"))
        except FileNotFoundError:
            raise ConfigError(f"no bundle at {path}") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{path} is not a seatledger site bundle ({type(e).__name__}: {e})"
                              ) from None


def parse_address(text: str) -> tuple[str, int]:
    """'host:port' -> (host, port). Raises ConfigError."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"bad address {text!r}: use HOST:PORT")
    return host.strip("[]"), int(port)
