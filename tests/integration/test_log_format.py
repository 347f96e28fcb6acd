"""``--log-format json``: one JSON object a line (time, level, event, and the event's own
fields), from a real slave process and from the formatter itself."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from seatledger.config.settings import load_config
from seatledger.config.store import open_ledger
from seatledger.daemons.logs import JsonFormatter
from seatledger.services.sites import enrol_site
from tests.integration.servers import HOST, free_port
from tests.licensing import licensed_data_dir
from tests.processes import die_with_parent

ROOT = Path(__file__).resolve().parents[2]


def slave_bundle(tmp_path: Path) -> Path:
    """A bundle for site ``north`` naming a master that is not running."""
    root, _vendor = licensed_data_dir(tmp_path)
    config = load_config(root)
    with open_ledger(config) as app:
        return enrol_site(config, app, "north", master=f"{HOST}:{free_port()}",
                          output=tmp_path / "north.bundle")


def run_slave(tmp_path: Path, log_format: str, last: str) -> list[str]:
    """Run a slave that cannot reach its master (its retries a second apart) until it says
    ``last``: its stderr lines."""
    bundle = slave_bundle(tmp_path)
    slave = subprocess.Popen([sys.executable, "-m", "seatledger.cli", "slave", "--bundle",
                              str(bundle), "--state-dir", str(tmp_path / f"slave-{log_format}"),
                              "--retry", "1s", "--cutoff-retry", "1s", "--attempts", "1",
                              "--log-format", log_format],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                             preexec_fn=die_with_parent)
    lines: list[str] = []
    try:
        assert slave.stderr is not None
        for line in slave.stderr:
            lines.append(line)
            if last in line:
                break
        slave.send_signal(signal.SIGTERM)
        assert slave.wait(timeout=30) == 0
    finally:
        slave.kill()
        slave.wait()
        for stream in (slave.stdout, slave.stderr):
            assert stream is not None
            stream.close()
    return lines


def test_a_slave_logs_json_lines_with_its_site(tmp_path: Path) -> None:
    lines = run_slave(tmp_path, "json", '"site": "north", "severity": "critical"')
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert {"time", "level", "logger", "event"} <= set(entry)
        assert entry["time"].endswith("Z")  # UTC
        assert datetime.fromisoformat(entry["time"][:-1] + "+00:00").utcoffset() == timedelta(0)
        assert entry["level"] in ("info", "warning", "error", "critical")
    [cut_off] = [e for e in entries if e.get("site") == "north"
                 and e["event"].startswith("cut off from the master")]
    assert cut_off["severity"] == "critical" and cut_off["level"] == "warning"


def test_text_stays_the_plain_lines_it_was(tmp_path: Path) -> None:
    lines = run_slave(tmp_path, "text", "] critical: cut off from the master")
    assert lines[-1].startswith("[") and "] critical: cut off from the master" in lines[-1]
    assert not any(line.startswith("{") for line in lines)


def test_the_formatter_keeps_extra_fields_and_the_traceback() -> None:
    logger = logging.getLogger("seatledger.test")
    record = logger.makeRecord("seatledger.test", logging.ERROR, __file__, 1,
                               "alert dropped after %d attempts", (3,), None,
                               extra={"channel": "webhook", "site": "north"})
    entry = json.loads(JsonFormatter().format(record))
    assert entry["event"] == "alert dropped after 3 attempts"
    assert (entry["level"], entry["channel"], entry["site"]) == ("error", "webhook", "north")
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logger.makeRecord("seatledger.test", logging.ERROR, __file__, 1, "failed",
                                   (), sys.exc_info())
    line = JsonFormatter().format(failed)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["error"]
