"""One record as a line of the export's JSON lines, and back (docs/export-format.md).

The line carries the record's identity (id, originator, version, topic), its plaintext
``payload`` -- the exact bytes the ledger's Merkle leaf hashes -- and, for readers, the
decoded event: its type, record time, occurrence time and fields. Verifiers and importers
trust only the identity and the payload; the rest is checked against the payload.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.persistence import Notification

from ledger.persistence.codec import decode_payload
from ledger.seal.merkle import leaf_hash
from ledger.seal.seal import CHECKPOINT_TOPIC_SUFFIX, leaf_bytes

__all__ = [
    "CHECKPOINT_TOPIC_SUFFIX",
    "as_uuid",
    "DecodedRecord",
    "RecordLine",
    "decode_lines",
    "decode_record",
    "encode_lines",
    "event_fields",
    "event_type",
    "fields_as_read",
    "record_leaf",
    "record_line",
]

# Stored on every event but exported as the line's own keys, not among its fields.
_TOP_LEVEL = frozenset({"originator_id", "originator_version", "timestamp", "occurred_at"})


class RecordLine(msgspec.Struct, forbid_unknown_fields=False):
    """One JSON line. Field order is the order of the keys in the file."""

    id: int
    originator_id: UUID
    version: int
    topic: str
    type: str
    recorded_at: datetime
    occurred_at: datetime
    payload: bytes
    fields: dict[str, Any]


class DecodedRecord(msgspec.Struct):
    """A record's domain event as the ledger reads it, plus its UTC record day."""

    event: Any
    recorded_at: datetime
    day: date


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(RecordLine)


def event_type(topic: str) -> str:
    """The event class name a topic ends with: ``ledger.domain.licence:Licence.SeatGranted`` ->
    ``SeatGranted``."""
    return topic.rpartition(".")[2].rpartition(":")[2]


def as_uuid(value: UUID | str) -> UUID:
    """An originator id as a UUID (stores may hand them out as text)."""
    return value if isinstance(value, UUID) else UUID(value)


def decode_record(originator_id: UUID | str, version: int, topic: str,
                  payload: bytes) -> DecodedRecord:
    """Decode a record's payload into its event.

    Raises:
        ValueError: the payload does not decode to an event with an aware record time.
    """
    try:
        event = decode_payload(as_uuid(originator_id), version, topic, payload)
    except Exception as err:  # the codec raises whatever its layers raise; all mean "bad"
        raise ValueError(f"the payload does not decode ({err})") from None
    recorded_at = getattr(event, "timestamp", None)
    if not isinstance(recorded_at, datetime) or recorded_at.tzinfo is None:
        raise ValueError("the payload has no record time")
    recorded_at = recorded_at.astimezone(UTC)
    return DecodedRecord(event, recorded_at, recorded_at.date())


def event_fields(event: Any) -> dict[str, Any]:
    """An event's own fields: everything stored but its identity and times."""
    return {k: v for k, v in event.__dict__.items() if k not in _TOP_LEVEL}


def fields_as_read(event: Any) -> dict[str, Any]:
    """:func:`event_fields` as a reader of the JSON line gets them back (plain JSON values)."""
    return msgspec.json.decode(_ENCODER.encode(event_fields(event)))  # type: ignore[no-any-return]


def record_line(notification: Notification, payload: bytes, decoded: DecodedRecord) -> RecordLine:
    """The export line of a stored record."""
    state = decoded.event.__dict__
    occurred_at = state.get("occurred_at", decoded.recorded_at)
    return RecordLine(
        id=notification.id,
        originator_id=as_uuid(notification.originator_id),
        version=notification.originator_version,
        topic=notification.topic,
        type=event_type(notification.topic),
        recorded_at=decoded.recorded_at,
        occurred_at=occurred_at.astimezone(UTC) if isinstance(occurred_at, datetime) else occurred_at,
        payload=payload,
        fields=event_fields(decoded.event),
    )


def record_leaf(line: RecordLine) -> bytes:
    """The Merkle leaf hash of a record, as the ledger's seal computes it."""
    return leaf_hash(leaf_bytes(line.id, line.originator_id, line.version, line.topic, line.payload))


def encode_lines(lines: Iterable[RecordLine]) -> bytes:
    """The JSON lines text (UTF-8, one record per line, each ending in a newline)."""
    return _ENCODER.encode_lines(list(lines))


def decode_lines(data: bytes) -> list[RecordLine]:
    """Parse the JSON lines text.

    Raises:
        ValueError: a line is not JSON or lacks a field or has one of the wrong type; the
            message says which line.
    """
    try:
        return _DECODER.decode_lines(data)
    except msgspec.DecodeError as err:
        raise ValueError(f"the records file is malformed ({err})") from None
