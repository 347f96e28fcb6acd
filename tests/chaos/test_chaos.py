"""Chaos (issue 9, section 6): a real master and slave under faults and abuse, a few rounds
each (``$SEATLEDGER_CHAOS_ROUNDS``, default 5); ``benchmarks/chaos.py`` runs the full counts.

Each test runs one scenario of :mod:`tests.chaos.scenarios` and checks its figures; the
failure message carries the whole report.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from tests.chaos.harness import Counts
from tests.chaos.scenarios import (
    clock_step_back,
    connection_flood,
    faulty_link,
    full_disk,
    operator_under_load,
    sigkill_under_load,
)

pytestmark = pytest.mark.chaos

COUNTS = Counts.from_env()
# Generous bounds (the goals are 50 ms and 300 MB at 20k connections).
FLOOD_FIRST_GRANT_SECONDS = 2.0
FLOOD_RSS_CEILING_MB = 300.0


def _shown(report: attrs.AttrsInstance) -> str:
    return repr(attrs.asdict(report))


async def test_acknowledged_grants_survive_sigkills_of_the_master(tmp_path: Path) -> None:
    report = await sigkill_under_load(tmp_path, COUNTS.kills)
    assert all(n >= 50 for n in report.acknowledged_per_round), _shown(report)
    assert report.lost == 0, _shown(report)
    assert report.served_after_crashes and report.clean_stop_status == 0, _shown(report)
    assert report.verify_status == 0, _shown(report)


async def test_a_cut_blackholed_and_delayed_link_leaves_both_sides_agreeing(
        tmp_path: Path) -> None:
    report = await faulty_link(tmp_path, COUNTS.proxy_faults)
    shown = _shown(report)
    assert set(report.faults) == {"cut", "blackhole", "delay"}, shown
    assert report.connections_cut >= 1, shown
    assert sum(report.acquired.values()) >= 20 and report.released >= 5, shown
    assert report.converged_seconds is not None, shown
    assert report.seat_list_status == 0, shown
    assert report.only_on_slave == [] and report.only_on_master == [], shown
    assert report.slave_seats == report.master_seats, shown
    assert report.slave_duplicates == 0 and report.master_double_grants == 0, shown
    # No log-on hung on the dead link: with 1 s heartbeats it is noticed within 3 s.
    assert report.slowest_answer_seconds <= 10, shown
    # The dialler was told the truth: what it holds is what the slave holds.
    assert report.dialler_failures == {} and report.dialler_disagrees == [], shown


async def test_operator_commands_under_load_all_succeed_and_the_seal_holds(
        tmp_path: Path) -> None:
    report = await operator_under_load(tmp_path, COUNTS.operator_commands)
    shown = _shown(report)
    assert report.succeeded == report.commands and report.failures == [], shown
    assert report.master_alive and report.clean_stop_status == 0, shown
    assert report.verify_status == 0, shown
    # Seat traffic kept flowing while the operator worked (not starved).
    assert report.progress[-1] > report.progress[0], shown
    assert report.grants_per_second_during > 0.1 * report.grants_per_second_before, shown


@pytest.mark.usefixtures("libfaketime")
async def test_a_wall_clock_set_back_is_recorded_and_recorded_time_never_goes_back(
        tmp_path: Path) -> None:
    report = await clock_step_back(tmp_path, hours=10)
    shown = _shown(report)
    assert report.first_stop_status == 0, shown
    # One step of the wall clock, recorded once, with both readings as they were.
    assert report.clock_stepped_running == 1, shown
    assert report.running_step_error_seconds is not None, shown
    assert report.running_step_error_seconds < 5, shown
    # Restarted on the clock that is still behind: noticed, and time goes on from the log.
    assert report.clock_stepped_at_restart == 1, shown
    assert report.restart_continued_from_last_seconds is not None, shown
    assert 0 <= report.restart_continued_from_last_seconds < 5, shown
    assert report.backwards == 0, shown
    # Not frozen at the instant of the step: recorded time kept moving (~4 s of load).
    assert report.advanced_after_step_seconds >= 1.0, shown
    assert report.lost == 0 and report.verify_status == 0, shown


async def test_an_unauthenticated_flood_leaves_a_real_site_served_and_memory_bounded(
        tmp_path: Path) -> None:
    report = await connection_flood(tmp_path, COUNTS.flood_connections)
    shown = _shown(report)
    assert report.established + sum(report.connect_failed.values()) == report.connections, (
        shown)
    assert report.master_alive, shown
    assert report.site_first_grant_seconds_max <= FLOOD_FIRST_GRANT_SECONDS, shown
    assert report.rss_peak_mb <= FLOOD_RSS_CEILING_MB, shown


@pytest.mark.usefixtures("small_fs")
async def test_a_full_disk_refuses_grants_keeps_the_master_and_recovers(
        tmp_path: Path) -> None:
    report = await full_disk(tmp_path)
    shown = _shown(report)
    assert report.refused.get("store_unavailable", 0) > 0, shown
    assert report.master_alive_while_full and report.full_seconds >= 11, shown
    assert report.seconds_to_recover is not None, shown
    assert report.lost == 0, shown
    assert report.sessions == 1, shown  # the session was kept through the outage
    assert report.clean_stop_status == 0 and report.verify_status == 0, shown
