"""Commands and outcomes cross the writer process's socket as pickles of their fields
(ledger.domain.values.pickled_as_fields): each comes back equal, of its own class, with
every field (defaults too) where it was."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import pytest

from ledger import AcquireSeat, Failure, Grant, Refusal, Release, ReleaseSeat
from ledger.domain.outcomes import Notice
from ledger.domain.values import RefusalReason, ReleaseReason, Severity

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
NOTICE = Notice("PRED", Severity.DAY_LEFT, T0, "a day left", "hours")

VALUES = [
    AcquireSeat("north", "alice", "PRED", "acme", "sales", "site_limit", "refused above"),
    AcquireSeat("north", "bob", "ACD"),
    ReleaseSeat("north", "alice"),
    Grant("north", "alice", 7, "PRED", True, T0, True, ("PRED", "PRED+ACD"), (NOTICE,)),
    Refusal("north", "carol", RefusalReason.LIMIT_ENFORCED, "over the limit"),
    Refusal("north", "dave", "upstream:site_limit", "refused upstream"),
    Release("north", "alice", 7, ReleaseReason.OPERATOR),
    Failure("no such seat", "unknown_seat"),
    NOTICE,
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_a_value_comes_back_whole(value: Any) -> None:
    back = pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    assert type(back) is type(value) and back == value
    assert value.__reduce__()[0] is type(value)  # pickled by its fields, not attrs' state
