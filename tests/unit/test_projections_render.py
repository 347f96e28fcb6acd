"""Pure pieces of the read models: instants as integers, and answers rendered as text."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from hypothesis import given

from projections import (
    PoolStatus,
    SiteStatus,
    Status,
    UsageReport,
    UsageRow,
    render_status_table,
    usage_csv,
    usage_json,
    usage_table,
)
from projections.render import REFUSAL_REASONS
from projections.timestamps import from_us, to_us
from tests.strategies import utc_instants

T = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


@given(utc_instants)
def test_instants_survive_the_round_trip_exactly(when: datetime) -> None:
    assert from_us(to_us(when)) == when


def test_naive_instants_are_taken_as_utc() -> None:
    assert to_us(T.replace(tzinfo=None)) == to_us(T)


def status(**pool: object) -> Status:
    values: dict[str, object] = {
        "pool": "PRED", "limit": 100, "in_use": 110, "state": "open",
        "deadline": T + timedelta(hours=48), "overuse": True, "enforced": False,
        "severity": 1, "opened_at": T, "closed_at": None}
    values.update(pool)
    return Status(
        licence_id="LIC-1", customer="Northwind", limits={"PRED": 100}, total_pred_acd=None,
        expires_at=T + timedelta(days=300), expired=False, grace_seconds=172800,
        rearm_seconds=2592000, ceiling_percent=None, cutoff_seconds=900, last_event_at=T,
        pools=(PoolStatus(**values),),  # type: ignore[arg-type]
        sites=(SiteStatus(site="north", status="connected", since=T, last_seen=T, seats=110,
                          seats_by_class={"PRED": 110}, local_limits={}),))


def test_status_table_shows_the_time_left_and_the_over_use() -> None:
    text = render_status_table(status(), now=T + timedelta(hours=24))
    pred = next(line for line in text.splitlines() if line.startswith("PRED"))
    assert pred.split()[:5] == ["PRED", "110", "100", "+10", "open"]
    assert "(1d 0h left)" in pred
    assert "north  connected" in text


def test_status_table_says_when_the_limit_is_enforced() -> None:
    text = render_status_table(status(state="spent", enforced=True, deadline=None))
    assert "spent (enforced)" in text


def test_status_table_before_any_licence() -> None:
    assert render_status_table(None) == "no licence has been issued yet"


def report(by: str) -> UsageReport:
    row = UsageRow(period=datetime(2026, 3, 2, tzinfo=UTC), key="north", agent_class="PRED",
                   agent_hours=495.0, peak=80, peak_at=T, limit=None, over_limit_minutes=None,
                   excess_agent_hours=None, overuse_agent_hours=77.5, grants=80,
                   overuse_grants=10, offline_grants=0, refusals={"site_limit": 5})
    return UsageReport(start=row.period, end=row.period + timedelta(days=1), by=by,
                       period="day", as_of=T, rows=(row,))


def test_usage_csv_has_a_column_per_refusal_reason() -> None:
    (row,) = csv.DictReader(io.StringIO(usage_csv(report("site"))))
    assert row["site"] == "north" and row["agent_hours"] == "495.0000"
    assert row["peak_at"] == "2026-03-02T09:15:00+00:00"
    assert row["refused"] == "5" and row["refused_site_limit"] == "5"
    assert all(row[f"refused_{r}"] == "0" for r in REFUSAL_REASONS if r != "site_limit")


def test_usage_table_and_json_by_site() -> None:
    text = usage_table(report("site"))
    assert text.splitlines()[1].split()[:4] == ["day", "site", "class", "agent-h"]
    assert "495.00" in text and "site_limit 5" in text
    data = json.loads(usage_json(report("site")))
    assert data["rows"][0]["refused"] == 5 and data["rows"][0]["peak_at"].startswith("2026")
