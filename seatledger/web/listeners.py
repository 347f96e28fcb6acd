"""Where a daemon's dashboard (``[web]``) and metrics (``[metrics]``) listen: read and checked
before anything starts, without importing the web servers (:mod:`.daemon`), which a daemon
loads only when one of them is configured."""

from __future__ import annotations

import tomllib
from pathlib import Path

from seatledger.config.settings import Config, ConfigError, HttpListener, http_listener
from seatledger.web.guard import read_token

WEB_LISTEN = "127.0.0.1:7680"
METRICS_LISTEN = "127.0.0.1:7681"
SLAVE_METRICS_LISTEN = "127.0.0.1:7682"


def master_listeners(config: Config) -> tuple[HttpListener | None, HttpListener | None]:
    """The master's ``[web]`` and ``[metrics]`` listeners (None: not configured), checked.

    Raises:
        ConfigError: a wrong value, a missing or open token file.
    """
    web = http_listener(config.raw, "web", WEB_LISTEN, config.root)
    metrics = http_listener(config.raw, "metrics", METRICS_LISTEN, config.root)
    for listener in (web, metrics):
        if listener is not None and listener.token_file is not None:
            read_token(listener.token_file)
    return web, metrics


def slave_metrics_listener(state_dir: Path, listen: str | None) -> HttpListener | None:
    """``--metrics-listen``, else ``[metrics]`` of ``slave.toml`` in the state directory.

    Raises:
        ConfigError: a wrong value.
    """
    if listen is not None:
        return http_listener({"metrics": {"listen": listen}}, "metrics", listen, state_dir)
    path = state_dir / "slave.toml"
    if not path.exists():
        return None
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None
    return http_listener(raw, "metrics", SLAVE_METRICS_LISTEN, state_dir)
