"""How events are turned into stored bytes: a compact transcoding, compression, AES-GCM.

The library's default JSON with ISO timestamps costs about 260 bytes per event. Here the
event state is MessagePack (msgspec) with field names replaced by one-byte codes from a
fixed, append-only table, timestamps as MessagePack timestamps, and ``occurred_at`` left out
when it equals the record time. The cipher binds each ciphertext to its row: the associated
data is (originator id, version, topic), so a state copied or swapped into another row fails
authentication instead of decrypting cleanly.

Stored state layout: ``nonce (12) || AES-GCM(flag (1) || payload) || tag (16)``; flag 1 means
the payload is zlib-compressed (done only when it saves space, i.e. for snapshots).
"""

from __future__ import annotations

import operator
import os
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs
import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eventsourcing.persistence import (
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import get_topic, resolve_topic

from ledger.domain.licence import Seat, Site
from ledger.domain.pools import Pool, PoolState
from ledger.domain.values import GracePolicy, SiteState

# Append-only: a code, once stored, must keep its meaning forever.
FIELD_NAMES: tuple[str, ...] = (
    "timestamp",
    "occurred_at",
    "originator_topic",
    "site",
    "user",
    "agent_class",
    "tenant",
    "campaign",
    "seat",
    "overuse",
    "offline",
    "reason",
    "pool",
    "in_use",
    "limit",
    "deadline",
    "severity",
    "seq",
    "detail",
    "customer",
    "limits",
    "expires_at",
    "grace_seconds",
    "rearm_seconds",
    "ceiling_percent",
    "local_limits",
    "fingerprint",
    "wall_clock",
    "recorded",
    "note",
    "tree_size",
    "root",
    "day",
    "first_id",
    "last_id",
    "destination",
    "sha256",
    "total_pred_acd",
    "cutoff_seconds",
    "state",
    "class_version",
    "tenants",
    "notice",
    "licence_id",
)
_CODE = {name: code for code, name in enumerate(FIELD_NAMES)}
_OCCURRED_AT = _CODE["occurred_at"]
_TIMESTAMP = _CODE["timestamp"]

_EXT_UUID = 1
_EXT_ATTRS = 2
_EXT_SEATS = 3  # a map of users to Seats, as one list of rows (see _seats_ext)

# Value classes that may appear inside aggregate snapshots, by stored code. Append-only: a
# code, once used, keeps its class forever. A class's stored fields are its init fields, in
# order (fields derived in __attrs_post_init__ are rebuilt, not stored).
VALUE_CLASSES: Mapping[int, type] = {0: Pool, 1: Seat, 2: Site, 3: GracePolicy}
_ATTRS_CODE: dict[type, int] = {cls: code for code, cls in VALUE_CLASSES.items()}
_STORED_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(a.name for a in attrs.fields(cls) if a.init) for cls in VALUE_CLASSES.values()
}


def _decode_pool(name: str, members: list[str], limit: int, in_use: int, state: str,
                 *rest: Any) -> Pool:
    return Pool(name, tuple(members), limit, in_use, PoolState(state), *rest)


def _decode_site(name: str, fingerprint: str, local_limits: dict[str, int], status: str,
                 *rest: Any) -> Site:
    return Site(name, fingerprint, local_limits, SiteState(status), *rest)


# How a stored value becomes its class again: enums and tuples are stored as plain values.
_ATTRS_DECODERS: dict[int, Callable[..., object]] = {
    0: _decode_pool, 1: Seat, 2: _decode_site, 3: GracePolicy,
}


_SCALARS = frozenset({str, int, float, bool, type(None), bytes, datetime, UUID})
_SEAT_FIELDS = operator.attrgetter(*_STORED_FIELDS[Seat])


class CompactTranscoder(Transcoder):
    """MessagePack with one-byte field codes; see the module docstring."""

    def __init__(self) -> None:
        self._inner = msgspec.msgpack.Encoder(enc_hook=self._enc_hook)
        self._encoder = msgspec.msgpack.Encoder(enc_hook=self._enc_hook)
        self._decoder = msgspec.msgpack.Decoder(ext_hook=self._ext_hook)

    def _enc_hook(self, obj: Any) -> Any:
        if isinstance(obj, UUID):
            return msgspec.msgpack.Ext(_EXT_UUID, obj.bytes)
        if isinstance(obj, (set, frozenset)):
            return sorted(obj)
        raise NotImplementedError(f"cannot store a value of type {type(obj).__name__}")

    def _prepare(self, obj: Any) -> Any:
        """Turn registered value classes into extension values, wherever they are nested.

        msgspec would otherwise encode attrs instances as plain maps, losing their type.
        """
        kind = type(obj)
        if kind in _SCALARS:
            return obj
        code = _ATTRS_CODE.get(kind)
        if code is not None:
            values = [self._prepare(getattr(obj, name)) for name in _STORED_FIELDS[kind]]
            return msgspec.msgpack.Ext(_EXT_ATTRS, self._inner.encode([code, *values]))
        if kind is dict:
            if obj and all(type(v) is Seat for v in obj.values()):
                return self._seats_ext(obj)
            return {k: self._prepare(v) for k, v in obj.items()}
        if kind in (list, tuple):
            return [self._prepare(v) for v in obj]
        return obj

    def _seats_ext(self, seats: dict[str, Seat]) -> msgspec.msgpack.Ext:
        """A site's seats (10,000 in a large snapshot) as one extension value: a row per
        seat, [user, [the Seat's stored fields]] (all scalars), encoded in one call,
        not an extension value each (which took a 10k-seat snapshot 50 ms to encode)."""
        return msgspec.msgpack.Ext(_EXT_SEATS, self._inner.encode(
            list(zip(seats.keys(), map(_SEAT_FIELDS, seats.values()), strict=True))))

    def _ext_hook(self, code: int, data: memoryview) -> Any:
        if code == _EXT_UUID:
            return UUID(bytes=bytes(data))
        if code == _EXT_ATTRS:
            cls_code, *values = self._decoder.decode(data)
            return _ATTRS_DECODERS[cls_code](*values)
        if code == _EXT_SEATS:
            return {user: Seat(*values) for user, values in self._decoder.decode(data)}
        raise ValueError(f"unknown extension type {code}")

    def encode(self, obj: Any) -> bytes:
        if type(obj) is dict:
            out = {}
            code, scalars = _CODE.get, _SCALARS
            for k, v in obj.items():
                out[code(k, k)] = v if type(v) in scalars else self._prepare(v)
            if _OCCURRED_AT in out and out[_OCCURRED_AT] == out.get(_TIMESTAMP):
                del out[_OCCURRED_AT]
            obj = out
        return self._encoder.encode(obj)

    def decode(self, data: bytes) -> Any:
        obj = self._decoder.decode(data)
        if type(obj) is dict:
            if _TIMESTAMP in obj and _OCCURRED_AT not in obj:
                obj[_OCCURRED_AT] = obj[_TIMESTAMP]
            # (Local names: the comprehension reads them as closure cells, not globals.)
            names, kind, code = FIELD_NAMES, type, int
            obj = {names[k] if kind(k) is code else k: v for k, v in obj.items()}
        return obj


_COMPRESS_ABOVE = 256


class RowCipher:
    """AES-256-GCM bound to the row it is stored in (see module docstring)."""

    NONCE = 12

    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("the at-rest key must be 32 bytes")
        self._aead = AESGCM(key)
        self._key = key

    def derive_key(self, purpose: bytes, length: int = 32) -> bytes:
        """A key for another purpose (e.g. the read models' labels), derived from the at-rest
        key with HKDF-SHA256; distinct purposes give independent keys."""
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"seatledger-at-rest",
                    info=purpose).derive(self._key)

    @staticmethod
    def associated_data(originator_id: UUID | str, version: int, topic: str) -> bytes:
        oid = originator_id.bytes if isinstance(originator_id, UUID) else originator_id.encode()
        return oid + struct.pack(">q", version) + topic.encode()

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        nonce = next(_nonces, None) or _fresh_nonces()
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, stored: bytes, aad: bytes) -> bytes:
        """Raises InvalidTag when the state was altered or belongs to another row."""
        return self._aead.decrypt(stored[: self.NONCE], stored[self.NONCE :], aad)


# Random nonces, drawn from the operating system a few hundred at a time: os.urandom lets go
# of the interpreter lock, and in the master's writer thread every such release can wait for
# the event loop to give it back. One list iterator hands each out once, whatever the
# threads; a forked child forgets its parent's.
_NONCES_DRAWN = 341
_nonces: Iterator[bytes] = iter(())


def _fresh_nonces() -> bytes:
    """Draw the next nonces; the first of them."""
    global _nonces
    size = RowCipher.NONCE
    drawn = os.urandom(size * _NONCES_DRAWN)
    _nonces = iter([drawn[i:i + size] for i in range(size, len(drawn), size)])
    return drawn[:size]


def _forget_nonces() -> None:
    global _nonces
    _nonces = iter(())


os.register_at_fork(after_in_child=_forget_nonces)


def open_rows(cipher: RowCipher, originator: bytes, rows: Iterable[tuple[int, Any, bytes]],
              topics: Mapping[Any, bytes]) -> list[tuple[int, Any, bytes]] | None:
    """One originator's (version, topic key, stored state) rows with their plaintexts for
    states, given its id's bytes and each topic key's topic bytes; None if one fails
    authentication (or names an unknown topic)."""
    decrypt = cipher._aead.decrypt
    try:
        return [(version, tkey, decrypt(stored[:_NONCE], stored[_NONCE:],
                                        originator + _VERSION(version) + topics[tkey]))
                for version, tkey, stored in rows]
    except (InvalidTag, KeyError, ValueError):
        return None


def pack_payload(payload: bytes, compress: bool = True) -> bytes:
    if compress and len(payload) > _COMPRESS_ABOVE:
        # Level 1: what is compressed is mostly snapshots, taken between commits; for a
        # 10k-seat one, level 6 costs 8 ms against 2 ms, for 13 % less.
        packed = zlib.compress(payload, 1)
        if len(packed) < len(payload):
            return b"\x01" + packed
    return b"\x00" + payload


def unpack_payload(data: bytes) -> bytes:
    if data[:1] == b"\x01":
        return zlib.decompress(data[1:])
    if data[:1] == b"\x00":
        return data[1:]
    raise ValueError("unknown payload flag")


@attrs.frozen
class EventKind:
    """A stored topic, resolved (see SealedMapper.event_kind)."""

    cls: type
    topic: bytes  # the end of the cipher's associated data
    class_version: int  # events stored at an older version are upcast to this one


def originator_bytes(originator_id: UUID | str) -> bytes:
    """The originator's part of the cipher's associated data (RowCipher.associated_data)."""
    return originator_id.bytes if isinstance(originator_id, UUID) else originator_id.encode()


_new = object.__new__
_set = object.__setattr__
_NONCE = RowCipher.NONCE
_VERSION = struct.Struct(">q").pack  # the version's part of the associated data


class SealedMapper(Mapper[UUID]):
    """A Mapper using the compact transcoder and the row-bound cipher.

    With ``cipher=None`` (tests, benchmarks of the plain path) it stores the flagged payload.
    """

    def __init__(self, transcoder: CompactTranscoder, cipher: RowCipher | None, compress: bool):
        super().__init__(transcoder=transcoder)
        self.row_cipher = cipher
        self.compress = compress
        self._topics: dict[type, tuple[str, bytes, int]] = {}
        self._kinds: dict[str, EventKind] = {}
        self._oid_bytes: dict[Any, bytes] = {}
        self.recent_payloads: dict[tuple[Any, int], bytes] | None = None

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        cls = type(domain_event)
        known = self._topics.get(cls)
        if known is None:  # the class's topic, as text and as associated data; its version
            topic = get_topic(cls)
            known = self._topics[cls] = (topic, topic.encode(), getattr(cls, "class_version", 1))
        topic, topic_bytes, class_version = known
        state = dict(domain_event.__dict__)
        originator_id = state.pop("originator_id")
        version = state.pop("originator_version")
        if class_version > 1:
            state["class_version"] = class_version
        data = pack_payload(self.transcoder.encode(state), self.compress)
        if self.recent_payloads is not None:
            self.recent_payloads[(originator_id, version)] = data
        if self.row_cipher is not None:  # (RowCipher.associated_data, from kept bytes)
            oid = self._oid_bytes.get(originator_id)
            if oid is None:
                oid = self._oid_bytes[originator_id] = originator_bytes(originator_id)
            data = self.row_cipher.seal(data, oid + _VERSION(version) + topic_bytes)
        return StoredEvent(
            originator_id=originator_id,
            originator_version=version,
            topic=topic,
            state=data,
        )

    def decode_state(self, stored: StoredEvent) -> dict[str, Any]:
        """Decrypt and decode a stored state. Raises MapperDeserialisationError."""
        oid = stored.originator_id
        return self._open_state(originator_bytes(oid), oid, stored.originator_version,
                                stored.topic.encode(), stored.state)

    def _open_state(self, oid: bytes, originator_id: Any, version: int, topic: bytes,
                    stored: bytes) -> dict[str, Any]:
        """decode_state, given the originator's and the topic's bytes (the associated data
        but the version)."""
        try:
            data = stored
            cipher = self.row_cipher
            if cipher is not None:  # RowCipher.open, with the associated data built here
                data = cipher._aead.decrypt(stored[:_NONCE], stored[_NONCE:],
                                            oid + _VERSION(version) + topic)
            # unpack_payload, inline for the usual flag (not compressed).
            payload = data[1:] if data[:1] == b"\x00" else unpack_payload(data)
            state: dict[str, Any] = self.transcoder.decode(payload)
        except InvalidTag as e:
            raise MapperDeserialisationError(
                f"event {version} of {originator_id}: "
                "state fails authentication (wrong key, altered, or moved from another record)"
            ) from e
        except Exception as e:
            raise MapperDeserialisationError(
                f"event {version} of {originator_id}: state cannot be decoded: {e}"
            ) from e
        return state

    def event_kind(self, topic: str) -> EventKind:
        """What decoding events of ``topic`` needs, resolved once. Raises eventsourcing's
        TopicError for a topic no class has."""
        kind = self._kinds.get(topic)
        if kind is None:
            cls = resolve_topic(topic)
            kind = self._kinds[topic] = EventKind(cls, topic.encode(),
                                                  getattr(cls, "class_version", 1))
        return kind

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        kind = self.event_kind(stored_event.topic)
        oid = stored_event.originator_id
        oid_bytes = self._oid_bytes.get(oid)
        if oid_bytes is None:  # (a ledger has a handful of originators: kept, not bounded)
            oid_bytes = self._oid_bytes[oid] = originator_bytes(oid)
        return self.decode_event(kind, oid_bytes, oid, stored_event.originator_version,
                                 stored_event.state)

    def decode_event(self, kind: EventKind, oid: bytes, originator_id: Any, version: int,
                     stored: bytes) -> Any:
        """to_domain_event for a row whose topic's ``kind`` and originator's bytes ``oid``
        the caller resolved once for many rows (a replay). Raises
        MapperDeserialisationError."""
        state = self._open_state(oid, originator_id, version, kind.topic, stored)
        state["originator_id"] = originator_id
        state["originator_version"] = version
        from_version = state.pop("class_version", 1)
        if from_version < kind.class_version:
            _upcast(kind, state, from_version)
        event: Any = _new(kind.cls)
        _set(event, "__dict__", state)
        return event

    def decode_rows(self, originator_id: UUID, rows: Iterable[tuple[int, int, bytes]],
                    topic_of: Callable[[int], str], kinds: dict[int, EventKind]
                    ) -> Iterator[Any]:
        """decode_event for each of one originator's rows (version, topic key, state), in
        order: ``topic_of`` names a topic key's topic, ``kinds`` holds the topics resolved
        so far (the caller keeps it across pages). Raises what decode_event raises, and
        eventsourcing's TopicError for a topic no class has.

        A replay's hot loop: decode_event's steps inline, without its two calls (and the
        caller's generator) for each row (sharing its last steps as a function of their own
        measured 8-10 % slower replays). A row this path fails on in any way is decoded
        again by decode_event, so that what is raised, and its message, are its own.
        """
        oid = self._oid_bytes.get(originator_id)
        if oid is None:
            oid = self._oid_bytes[originator_id] = originator_bytes(originator_id)
        decrypt = self.row_cipher._aead.decrypt if self.row_cipher is not None else None
        decode = self.transcoder.decode
        for version, tkey, stored in rows:
            kind = kinds.get(tkey)
            if kind is None:
                kind = kinds[tkey] = self.event_kind(topic_of(tkey))
            try:
                data = stored if decrypt is None else decrypt(
                    stored[:_NONCE], stored[_NONCE:], oid + _VERSION(version) + kind.topic)
                state = decode(data[1:] if data[:1] == b"\x00" else unpack_payload(data))
                state["originator_id"] = originator_id
                state["originator_version"] = version
                from_version = state.pop("class_version", 1)
                if from_version < kind.class_version:
                    _upcast(kind, state, from_version)
                event: Any = _new(kind.cls)
                _set(event, "__dict__", state)
            except Exception:
                event = self.decode_event(kind, oid, originator_id, version, stored)
            yield event


def _upcast(kind: EventKind, state: dict[str, Any], from_version: int) -> None:
    """Bring ``state``, stored at ``from_version`` of its class, to the class's version, by
    the class's ``upcast_vX_vY`` steps."""
    while from_version < kind.class_version:
        getattr(kind.cls, f"upcast_v{from_version}_v{from_version + 1}")(state)
        from_version += 1


_PLAIN = None


def decode_payload(originator_id: UUID, version: int, topic: str, payload: bytes) -> Any:
    """The domain event held in a plaintext payload (as exported). Raises
    MapperDeserialisationError if it cannot be decoded."""
    global _PLAIN
    if _PLAIN is None:
        _PLAIN = SealedMapper(CompactTranscoder(), None, True)
    return _PLAIN.to_domain_event(StoredEvent(originator_id=originator_id,
                                              originator_version=version, topic=topic,
                                              state=payload))
