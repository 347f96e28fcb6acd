"""The replay's fast paths agree with the per-row ones: SealedMapper.decode_rows gives the
events decode_event gives (upcast, compressed, fields outside the code table) and raises the
same errors for a damaged row; apply_events leaves a licence exactly as the library's
mutate() does, also when it stops at an event out of order."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.domain import DomainEvent, OriginatorVersionError
from eventsourcing.persistence import MapperDeserialisationError
from eventsourcing.utils import get_topic

from ledger.application import apply_events
from ledger.domain.licence import LICENCE_ID, Licence
from ledger.persistence.codec import (
    CompactTranscoder,
    EventKind,
    RowCipher,
    SealedMapper,
    originator_bytes,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
S = timedelta(seconds=1)


class Noted(DomainEvent):
    """An event stored at class version 1."""

    note: str
    detail: str


class NotedV2(DomainEvent):
    """Noted as it became: ``note`` renamed ``text``, a ``severity`` added."""

    class_version: ClassVar[int] = 2
    text: str
    detail: str
    severity: int

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["text"] = state.pop("note")
        state["severity"] = 0


def mapper(cipher: bool = True) -> SealedMapper:
    return SealedMapper(CompactTranscoder(), RowCipher(os.urandom(32)) if cipher else None,
                        compress=True)


def licence_events() -> list[Any]:
    """A licence issued, a site, seats granted and released (one granted twice, one with
    an ``occurred_at`` of its own), a refusal: LicenceIssued has fields outside the code
    table (``in_force``, ``hours``)."""
    licence = Licence.issue(T0, customer="c", limits={"PRED": 3, "ACD": 1}, master_slave=False)
    licence.enrol_site(T0 + S, "north")
    licence.acquire(T0 + 2 * S, "north", "u1", "PRED", "t", "c1")
    licence.acquire(T0 + 3 * S, "north", "u2", "PRED", "t", "c2")
    licence.acquire(T0 + 4 * S, "north", "u1", "PRED", "t", "c1")  # a repeat: no event
    licence.acquire(T0 + 5 * S, "north", "u3", "ACD", "t", "c1")
    licence.acquire(T0 + 6 * S, "north", "u4", "ACD", "t", "c1")  # refused: ACD is full
    licence.release(T0 + 7 * S, "north", "u2")
    licence.acquire(T0 + 8 * S, "north", "u5", "PRED", "t", "c3")
    events: list[Any] = licence.collect_events()
    late = events[-1]  # as a seat granted offline: it occurred before it was recorded
    late.__dict__["occurred_at"] = late.timestamp - 30 * S
    return events


def stored_rows(m: SealedMapper, events: list[Any]
                ) -> tuple[list[tuple[int, int, bytes]], dict[int, EventKind]]:
    """The events stored by ``m``, as replay reads rows (version, topic key, state), and
    the kinds by topic key."""
    keys: dict[str, int] = {}
    rows = []
    for event in events:
        stored = m.to_stored_event(event)
        key = keys.setdefault(stored.topic, len(keys))
        rows.append((stored.originator_version, key, stored.state))
    return rows, {key: m.event_kind(topic) for topic, key in keys.items()}


def per_row(m: SealedMapper, rows: list[tuple[int, int, bytes]], kinds: dict[int, EventKind],
            originator_id: UUID = LICENCE_ID) -> list[Any]:
    oid = originator_bytes(originator_id)
    return [m.decode_event(kinds[key], oid, originator_id, version, state)
            for version, key, state in rows]


def same_events(a: list[Any], b: list[Any]) -> bool:
    """Same classes, same fields, in the same order."""
    return ([(type(e), list(e.__dict__.items())) for e in a]
            == [(type(e), list(e.__dict__.items())) for e in b])


@pytest.mark.parametrize("cipher", [True, False])
def test_decode_rows_gives_the_events_decode_event_gives(cipher: bool) -> None:
    m = mapper(cipher)
    events = licence_events()
    rows, kinds = stored_rows(m, events)
    fast = list(m.decode_rows(LICENCE_ID, rows, lambda key: pytest.fail("resolved"), kinds))
    assert same_events(fast, per_row(m, rows, kinds))
    assert [(type(e), e.__dict__) for e in fast] == [(type(e), e.__dict__) for e in events]
    assert fast[0].in_force is True and fast[0].hours == {}  # not in the code table
    assert fast[-1].occurred_at == fast[-1].timestamp - 30 * S
    assert fast[2].occurred_at == fast[2].timestamp  # left out when stored, restored


def test_decode_rows_resolves_each_topic_once_and_keeps_it() -> None:
    m = mapper()
    rows, kinds = stored_rows(m, licence_events())
    topics = {key: kind.topic.decode() for key, kind in kinds.items()}
    asked: list[int] = []
    resolved: dict[int, EventKind] = {}

    def topic_of(key: int) -> str:
        asked.append(key)
        return topics[key]

    list(m.decode_rows(LICENCE_ID, rows, topic_of, resolved))
    assert sorted(asked) == sorted(kinds) and resolved == kinds


def test_decode_rows_upcasts_and_decompresses_as_decode_event_does() -> None:
    m = mapper()
    old = [Noted(originator_id=LICENCE_ID, originator_version=v, timestamp=T0 + v * S,
                 note=f"n{v}", detail="x" * 2000 if v == 2 else "short") for v in (1, 2, 3)]
    rows, kinds = stored_rows(m, old)
    assert len(rows[1][2]) < 1000  # the long detail was compressed
    # The stored topic is the old class's; the class it names now is at version 2.
    kinds = {key: EventKind(NotedV2, kind.topic, 2) for key, kind in kinds.items()}
    fast = list(m.decode_rows(LICENCE_ID, rows, str, kinds))
    assert same_events(fast, per_row(m, rows, kinds))
    assert [type(e) for e in fast] == [NotedV2] * 3
    assert [(e.text, e.severity, len(e.detail)) for e in fast] == [
        ("n1", 0, 5), ("n2", 0, 2000), ("n3", 0, 5)]
    assert all("note" not in e.__dict__ and "class_version" not in e.__dict__ for e in fast)


def damaged(rows: list[tuple[int, int, bytes]], kinds: dict[int, EventKind]
            ) -> list[list[tuple[int, int, bytes]]]:
    """The rows with one of them damaged, each way: altered, moved to another version,
    under another topic, truncated."""
    version, key, state = rows[3]
    other_key = next(k for k in kinds if k != key)
    flipped = state[:20] + bytes([state[20] ^ 1]) + state[21:]
    return [rows[:3] + [row] + rows[4:] for row in [
        (version, key, flipped), (version + 1, key, state), (version, other_key, state),
        (version, key, state[:5])]]


def test_a_damaged_row_fails_with_decode_events_error() -> None:
    m = mapper()
    rows, kinds = stored_rows(m, licence_events())
    for bad in damaged(rows, kinds):
        with pytest.raises(MapperDeserialisationError) as expected:
            per_row(m, bad, kinds)
        fast = m.decode_rows(LICENCE_ID, bad, str, kinds)
        assert same_events([next(fast) for _ in range(3)], per_row(m, rows[:3], kinds))
        with pytest.raises(MapperDeserialisationError) as raised:
            next(fast)
        assert str(raised.value) == str(expected.value)
        assert "event 4 of" in str(raised.value) or "event 5 of" in str(raised.value)


@pytest.mark.parametrize("payload", [b"\x00\xc1", b"\x02abc", b"", b"\x00\x92\x01\x02"])
def test_a_plaintext_that_does_not_decode_fails_with_decode_events_error(payload: bytes
                                                                         ) -> None:
    """Without a cipher: a payload that is not MessagePack, an unknown flag, nothing at
    all, a list where a map belongs (decode_event's TypeError, not a decode error)."""
    m = mapper(cipher=False)
    kind = m.event_kind(get_topic(Licence.SeatGranted))
    with pytest.raises(Exception) as expected:
        m.decode_event(kind, LICENCE_ID.bytes, LICENCE_ID, 7, payload)
    with pytest.raises(Exception) as raised:
        list(m.decode_rows(LICENCE_ID, [(7, 0, payload)], str, {0: kind}))
    assert type(raised.value) is type(expected.value)
    assert str(raised.value) == str(expected.value)


def test_the_transcoder_keeps_keys_outside_the_code_table() -> None:
    codec = CompactTranscoder()
    state = {"timestamp": T0, "site": "north", "in_force": True, "hours": {"PBX": 10}}
    assert codec.decode(codec.encode(state)) == {**state, "occurred_at": T0}
    assert list(codec.decode(codec.encode(state))) == [
        "timestamp", "site", "in_force", "hours", "occurred_at"]


def mutated(events: list[Any]) -> Licence:
    """The licence the library's mutate() rebuilds, event by event."""
    licence: Any = None
    for event in events:
        licence = event.mutate(licence)
    return licence


def test_apply_events_rebuilds_what_mutate_rebuilds() -> None:
    events = licence_events()
    applied = apply_events(None, events)
    expected = mutated(events)
    assert applied is not None
    assert (applied.version, applied.modified_on) == (expected.version, expected.modified_on)
    assert applied.__dict__ == expected.__dict__


def test_apply_events_stopped_by_an_event_out_of_order_leaves_the_last_applied() -> None:
    """A licence passed in (as absorb() passes its copy's) keeps the version, time and seat
    counts of the last event applied, as when every event's were set as it was applied."""
    events = licence_events()
    licence = mutated(events[:3])
    with pytest.raises(OriginatorVersionError):
        apply_events(licence, events[3:5] + events[6:])  # seat events, then a gap
    expected = mutated(events[:5])
    assert (licence.version, licence.modified_on) == (expected.version, expected.modified_on)
    assert licence.__dict__ == expected.__dict__
