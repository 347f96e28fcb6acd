"""The master's and the slave's Prometheus metrics, scraped over HTTP from real processes
after known traffic and parsed with ``prometheus_client``'s own parser."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import trio
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.web_world import (
    CLI,
    deploy,
    free_port,
    get,
    master,
    seat,
    slave,
    wait_for_line,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[set[str], Samples]:
    status, body = get("127.0.0.1", port, "/metrics")
    assert status == 200, body
    families = list(text_string_to_metric_families(body.decode()))
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families for s in f.samples}
    return {f.name for f in families}, samples


async def test_master_and_slave_metrics_count_the_traffic(tmp_path: Path) -> None:
    master_metrics, slave_metrics = free_port(), free_port()
    world = deploy(tmp_path, f'[metrics]\nlisten = "127.0.0.1:{master_metrics}"\n')
    state = tmp_path / "north"
    state.mkdir(mode=0o700)
    (state / "slave.toml").write_text(f'[metrics]\nlisten = "127.0.0.1:{slave_metrics}"\n')
    with master(world) as m:
        await wait_for_line(m, b"serving")
        with slave(world, state) as s:
            await wait_for_line(s, b"socket")
            with trio.fail_after(30):  # the site's session is up: the seats are the master's
                while scrape(master_metrics)[1][("seatledger_sessions", ())] != 1:
                    await trio.sleep(0.2)
            for user in ("p1", "p2", "p3"):
                assert "normal" in seat(state, "acquire", "--user", user, "--class", "PRED")
            assert "normal" in seat(state, "acquire", "--user", "a1", "--class", "ACD")
            refused = subprocess.run([*CLI, "seat", "acquire", "--user", "x1", "--class", "PBX",
                                      "--state-dir", str(state)], capture_output=True, text=True,
                                     timeout=60)
            assert refused.returncode == 1, refused.stdout + refused.stderr
            seat(state, "release", "--user", "p3")

            # The pools come from the read models, which the master's follower keeps current
            # (fed each commit, so it may be seen part-way: PRED is 2 after p2's grant too;
            # only the end has PRED 2 and ACD 1).
            with trio.fail_after(30):
                while True:
                    names, samples = scrape(master_metrics)
                    if (samples.get(("seatledger_pool_seats_in_use", (("pool", "PRED"),))) == 2
                            and samples.get(("seatledger_pool_seats_in_use",
                                             (("pool", "ACD"),))) == 1):
                        break
                    await trio.sleep(0.3)
            assert {"seatledger_requests", "seatledger_batch_size", "seatledger_commit_seconds",
                    "seatledger_pool_seats_in_use", "seatledger_pool_limit",
                    "seatledger_pool_grace_state", "seatledger_pool_deadline_seconds",
                    "seatledger_sites", "seatledger_queue_depth",
                    "seatledger_last_export_timestamp_seconds",
                    "seatledger_read_model_lag_records"} <= names
            requests = {labels: v for (name, labels), v in samples.items()
                        if name == "seatledger_requests_total"}
            assert requests[(("outcome", "granted"), ("reason", ""))] == 4
            assert requests[(("outcome", "refused"), ("reason", "class_not_licensed"))] == 1
            assert requests[(("outcome", "released"), ("reason", ""))] == 1
            assert samples[("seatledger_pool_limit", (("pool", "PRED"),))] == 100
            assert samples[("seatledger_pool_grace_state",
                            (("pool", "PRED"), ("state", "available")))] == 1
            assert samples[("seatledger_pool_grace_state", (("pool", "PRED"), ("state", "open")))] == 0
            assert samples[("seatledger_sites", (("status", "connected"),))] == 1
            assert samples[("seatledger_queue_depth", ())] == 0
            # Every request is in some batch; each batch's commit was timed.
            batches = samples[("seatledger_batch_size_count", ())]
            assert samples[("seatledger_batch_size_sum", ())] >= 6
            assert samples[("seatledger_commit_seconds_count", ())] == batches >= 1
            assert samples[("seatledger_read_model_lag_records", ())] >= 0

            names, samples = scrape(slave_metrics)
            assert {"seatledger_slave_seats_held", "seatledger_slave_state",
                    "seatledger_slave_journal_backlog"} <= names
            assert samples[("seatledger_slave_seats_held", (("agent_class", "PRED"),))] == 2
            assert samples[("seatledger_slave_seats_held", (("agent_class", "ACD"),))] == 1
            assert samples[("seatledger_slave_state", (("state", "online"),))] == 1
            assert samples[("seatledger_slave_state", (("state", "offline"),))] == 0
            assert samples[("seatledger_slave_journal_backlog", ())] == 0
        m.send_signal(signal.SIGTERM)  # the listeners stop with the master, cleanly
        assert await trio.to_thread.run_sync(lambda: m.wait(timeout=30)) == 0
