from .engine import VIEWS_SCHEMA, views_url
from .errors import (
    ConcurrentRunnerError,
    ProjectionError,
    UnknownProjectionError,
    ViewStoreError,
)
from .html_report import render_html_report, write_html_report
from .live_status import PoolStatus, SiteStatus, Status, read_status
from .point_in_time import (
    HistoryEntry,
    PoolAt,
    RefusalAnswer,
    SeatSpan,
    StateAt,
    pool_windows,
    state_at,
    user_history,
    why_refused,
)
from .render import (
    render_history_table,
    render_state_table,
    render_status_table,
    render_why_refused,
    to_json,
    usage_csv,
    usage_json,
    usage_table,
)
from .runner import PROJECTIONS, ProjectionRunner, check_names
from .usage import DIMENSIONS, PERIODS, HoursUsage, UsageReport, UsageRow, usage_report

__all__ = [
    "DIMENSIONS", "PERIODS", "PROJECTIONS", "VIEWS_SCHEMA", "ConcurrentRunnerError", "HistoryEntry",
    "HoursUsage", "PoolAt",
    "PoolStatus", "ProjectionError", "ProjectionRunner", "RefusalAnswer", "SeatSpan",
    "SiteStatus", "StateAt", "Status", "UnknownProjectionError", "UsageReport", "UsageRow",
    "ViewStoreError", "check_names", "pool_windows", "read_status", "render_history_table",
    "render_html_report", "render_state_table", "render_status_table", "render_why_refused",
    "state_at", "to_json", "usage_csv", "usage_json", "usage_report", "usage_table",
    "user_history", "views_url", "why_refused", "write_html_report",
]
