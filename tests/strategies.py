"""Hypothesis strategies shared by the test suites, one section per package under test.

Test files import what they draw from here rather than defining their own, so that a
message, an instant or a command sequence means the same thing in every suite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from transport import (
    PROTOCOL_VERSION,
    Acquire,
    Error,
    Goodbye,
    Granted,
    Heartbeat,
    HeldSeat,
    Hello,
    Message,
    Notice,
    OfflineEvent,
    Reclaimed,
    Refused,
    Release,
    Released,
    Sync,
    SyncDone,
    Welcome,
)

# --- the wire (transport) -------------------------------------------------------------------

names = st.text(min_size=1, max_size=12)
labels = st.text(max_size=12)
agent_classes = st.sampled_from(["PRED", "ACD", "PBX", "VIR"])
request_ids = st.integers(min_value=0, max_value=2**63 - 1)
counts = st.integers(min_value=0, max_value=2**40)
epochs = st.floats(min_value=0.0, max_value=1e11)
texts = st.text(max_size=40)

offline_events = st.builds(
    OfflineEvent,
    seq=st.integers(min_value=1, max_value=2**40),
    kind=st.sampled_from(["grant", "release"]),
    user=names,
    agent_class=agent_classes,
    tenant=labels,
    campaign=labels,
    occurred_at=epochs,
)
held_seats = st.builds(
    HeldSeat, user=names, agent_class=agent_classes, tenant=labels, campaign=labels
)

MESSAGE_STRATEGIES: dict[type[Message], st.SearchStrategy[Message]] = {
    Hello: st.builds(Hello, site=names, version=st.just(PROTOCOL_VERSION), capabilities=st.tuples(names)),
    Welcome: st.builds(
        Welcome,
        session=names,
        heartbeat_interval=st.floats(min_value=0.001, max_value=86400.0),
        limits=st.dictionaries(agent_classes, counts),
    ),
    Sync: st.builds(
        Sync,
        events=st.lists(offline_events, max_size=4).map(tuple),
        held=st.lists(held_seats, max_size=4).map(tuple),
        more=st.booleans(),
    ),
    SyncDone: st.builds(SyncDone, applied=counts, skipped=counts, reconciled=counts),
    Acquire: st.builds(
        Acquire,
        request_id=request_ids,
        user=names,
        agent_class=agent_classes,
        tenant=labels,
        campaign=labels,
    ),
    Granted: st.builds(
        Granted,
        request_id=request_ids,
        seat=names,
        status=st.sampled_from(["normal", "overuse"]),
        grace_deadline=st.none() | epochs,
    ),
    Refused: st.builds(Refused, request_id=request_ids, reason=names, detail=texts),
    Release: st.builds(Release, request_id=request_ids, user=names),
    Released: st.builds(
        Released, request_id=request_ids, user=names, ok=st.booleans(), reason=labels
    ),
    Heartbeat: st.just(Heartbeat()),
    Notice: st.builds(
        Notice,
        kind=names,
        agent_class=agent_classes,
        severity=st.sampled_from(["info", "warning", "urgent", "critical"]),
        deadline=st.none() | epochs,
        text=texts,
    ),
    Reclaimed: st.builds(Reclaimed, user=names, reason=labels, text=texts),
    Goodbye: st.builds(Goodbye, reason=texts),
    Error: st.builds(Error, code=names, text=texts),
}
"""One strategy per message type, every field drawn within the schema's bounds."""

any_message = st.one_of(*MESSAGE_STRATEGIES.values())

acquire_batches = st.lists(
    st.builds(Acquire, request_id=st.just(0), user=names, agent_class=agent_classes),
    max_size=20,
).map(lambda ms: [Acquire(i, m.user, m.agent_class) for i, m in enumerate(ms)])
"""Acquires numbered 0, 1, 2, ... as one client sends them."""

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)
"""Anything msgpack can carry: what a hostile peer can put in a field."""

# --- time -----------------------------------------------------------------------------------

utc_instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                            timezones=st.just(UTC))

# --- the seal (merkle trees, signed notes) --------------------------------------------------

leaf_data = st.lists(st.binary(max_size=8), max_size=300)
"""The data of up to 300 leaves."""

note_texts = st.text(st.characters(codec="utf-8", min_codepoint=0x20), min_size=1)
"""A line of a signed note: printable UTF-8, no newline."""

# --- ledger command sequences ---------------------------------------------------------------

SITES = ("north", "south")


def sampled_users(count: int) -> tuple[str, ...]:
    """User names ``u0`` .. ``u<count-1>``: a small set, so that users log on again."""
    return tuple(f"u{i}" for i in range(count))


site_names = st.sampled_from(SITES)
advance_hours = st.integers(min_value=1, max_value=24 * 10)
"""Hours to move the clock on: 30 steps stay within a licence year."""
limit_deltas = st.integers(min_value=-1, max_value=2)


def master_operations(users: tuple[str, ...], classes: tuple[str, ...]
                      ) -> st.SearchStrategy[tuple[Any, ...]]:
    """The commands a master sees, as tuples ``(kind, ...)``: log-ons and log-offs,
    connections dropping and coming back, offline journals synced, revocations and
    re-enrolments, licence amendments, and time passing (minutes to 200 days)."""
    site, user, cls = site_names, st.sampled_from(users), st.sampled_from(classes)
    offline_event = st.tuples(st.sampled_from(("grant", "release")), user, cls,
                              st.integers(min_value=1, max_value=20))
    acquire = st.tuples(st.just("acquire"), site, user, cls)
    advance = st.tuples(st.just("advance"),
                        st.sampled_from((5, 20, 60, 6 * 60, 25 * 60, 49 * 60,
                                         31 * 24 * 60, 200 * 24 * 60)))
    # Log-ons and time passing are drawn more often, so that windows open, expire and re-arm.
    return st.one_of(
        acquire, acquire, acquire, advance,
        st.tuples(st.just("release"), site, user),
        st.tuples(st.just("connect"), site),
        st.tuples(st.just("disconnect"), site),
        st.tuples(st.just("amend"), st.integers(min_value=1, max_value=4),
                  st.one_of(st.none(), st.integers(min_value=1, max_value=4))),
        st.tuples(st.just("revoke"), site),
        st.tuples(st.just("enrol"), site),
        st.tuples(st.just("sync"), site, st.lists(offline_event, max_size=4),
                  st.lists(st.tuples(user, cls), max_size=3, unique_by=lambda h: h[0])),
    )
