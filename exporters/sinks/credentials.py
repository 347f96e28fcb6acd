"""Reading secrets from the files configuration names (never from the configuration itself)."""

from __future__ import annotations

from pathlib import Path

from ..errors import SinkConfigError

__all__ = ["read_secret_file"]


def read_secret_file(path: Path) -> str:
    """The file's text without its trailing line break.

    Raises:
        SinkConfigError: unreadable, not UTF-8, or empty.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise SinkConfigError(f"cannot read secret file {path}: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise SinkConfigError(f"secret file {path} is not UTF-8 text") from err
    secret = text.rstrip("\r\n")
    if not secret:
        raise SinkConfigError(f"secret file {path} is empty")
    return secret
