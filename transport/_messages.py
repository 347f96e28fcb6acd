"""The messages of the seatledger wire protocol: small frozen, typed values.

Each message is a msgspec ``Struct`` encoded as a MessagePack array whose first element is the
message's tag (its class name) followed by its fields in declaration order, so
``Acquire(7, "u1", "PRED", "acme", "sales")`` travels as
``["Acquire", 7, "u1", "PRED", "acme", "sales"]``. Decoding validates every field's type and
bounds. A newer peer may append fields at the end (older decoders ignore trailing extras);
anything incompatible bumps :data:`~transport._frames.PROTOCOL_VERSION` instead.

Times on the wire are float seconds since the Unix epoch, UTC. Request ids are chosen by the
slave, unique among its requests still awaiting an answer.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeAlias

import msgspec

__all__ = [
    "Acquire",
    "Error",
    "Goodbye",
    "Granted",
    "HeldSeat",
    "Heartbeat",
    "Hello",
    "MESSAGE_TYPES",
    "Message",
    "Notice",
    "OfflineEvent",
    "RECLAIM",
    "Reclaimed",
    "Refused",
    "Release",
    "Released",
    "STANDBY",
    "Sync",
    "SyncDone",
    "Welcome",
    "decode_message",
    "encode_message",
]

RequestId = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
Seq = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
# Bounded so that NaN, infinities and negative times are refused at the wire.
EpochSeconds = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]
Seconds = Annotated[float, msgspec.Meta(gt=0.0, le=86400.0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Label = Annotated[str, msgspec.Meta(max_length=256)]
AgentClass = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Text = Annotated[str, msgspec.Meta(max_length=4096)]


class _Wire(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Shared encoding options: immutable, positional on the wire, untracked by the GC.

    Every subclass repeats ``frozen=True``: msgspec inherits it at run time, but type checkers
    (``dataclass_transform``) read each class's own keywords and would call it mutable.
    """


class _Tagged(_Wire, frozen=True, tag=True):
    """A top-level message: tagged with its class name."""


# --- handshake -------------------------------------------------------------------------


class Hello(_Tagged, frozen=True):
    """Slave → master, first message.

    ``site``: the site name; must equal the CN of the slave's certificate.
    ``version``: the protocol version the slave speaks.
    ``capabilities``: optional feature names the slave supports.
    """

    site: Name
    version: Annotated[int, msgspec.Meta(ge=0, le=255)]
    capabilities: tuple[Name, ...] = ()


class Welcome(_Tagged, frozen=True):
    """Master → slave, answer to Hello.

    ``session``: an id the master gives this connection (for logs and audit).
    ``heartbeat_interval``: seconds between heartbeats each side should send.
    ``limits``: the site's seat limits per agent class (class → seats); may be empty.
    ``origin``: the master's origin, the name its audit trail is signed under (a chained
    master records which upstream it is chained under by it); empty from older masters.
    """

    session: Name
    heartbeat_interval: Seconds
    limits: dict[AgentClass, Count] = msgspec.field(default_factory=dict)
    origin: Label = ""


class OfflineEvent(_Wire, frozen=True):
    """One seat event the slave journalled while cut off from the master (part of Sync).

    ``seq``: per-site sequence number, strictly increasing, never reused.
    ``kind``: ``"grant"`` or ``"release"``. ``occurred_at``: the slave's time of the event.
    ``reason``: for a release the slave made by itself, why (``"site_cut_off"``: it was cut
    off from the master); empty for a user's own log-off, and from slaves that predate it.
    """

    seq: Seq
    kind: Literal["grant", "release"]
    user: Name
    agent_class: AgentClass
    tenant: Label
    campaign: Label
    occurred_at: EpochSeconds
    reason: Label = ""


class HeldSeat(_Wire, frozen=True):
    """One seat the slave holds right now (part of Sync)."""

    user: Name
    agent_class: AgentClass
    tenant: Label
    campaign: Label


class Sync(_Tagged, frozen=True):
    """Slave → master, after Welcome: offline journal and the seats held now.

    ``events``: journalled offline events, in increasing ``seq``.
    ``held``: the seats the slave holds at the moment of sending.
    ``more``: true if further Sync chunks follow; a large journal is sent as several Sync
    messages (each within the frame limit), the last with ``more=False``. The master's
    ``held`` view is the union of all chunks'.
    """

    events: tuple[OfflineEvent, ...] = ()
    held: tuple[HeldSeat, ...] = ()
    more: bool = False


class SyncDone(_Tagged, frozen=True):
    """Master → slave, after the last Sync chunk: how the journal was applied.

    ``applied``: offline events recorded; ``skipped``: events already recorded earlier (by
    ``seq``); ``reconciled``: seats the master released because the slave no longer holds them.
    """

    applied: Count
    skipped: Count
    reconciled: Count


# --- seats -----------------------------------------------------------------------------


class Acquire(_Tagged, frozen=True):
    """Slave → master: ask for a seat for ``user`` of ``agent_class``.

    ``tenant`` and ``campaign`` are labels carried into the ledger; either may be empty.
    Answered by Granted or Refused with the same ``request_id``.
    """

    request_id: RequestId
    user: Name
    agent_class: AgentClass
    tenant: Label = ""
    campaign: Label = ""


class Granted(_Tagged, frozen=True):
    """Master → slave: the seat is granted (and durably recorded).

    ``seat``: the master's id for the seat. ``status``: ``"normal"``, or ``"overuse"`` while a
    grace window is open, in which case ``grace_deadline`` is when it closes.
    """

    request_id: RequestId
    seat: Name
    status: Literal["normal", "overuse"] = "normal"
    grace_deadline: EpochSeconds | None = None


class Refused(_Tagged, frozen=True):
    """Master → slave: the request (Acquire, or Release) is refused.

    ``reason``: a reason code (e.g. ``"limit_enforced"``, ``"site_limit"``); ``detail``: text.
    """

    request_id: RequestId
    reason: Name
    detail: Text = ""


class Release(_Tagged, frozen=True):
    """Slave → master: ``user`` gave up their seat. Answered by Released (or Refused)."""

    request_id: RequestId
    user: Name


class Released(_Tagged, frozen=True):
    """Master → slave: answer to Release.

    ``ok``: false if nothing was released (``reason`` says why, e.g. ``"unknown_seat"``).
    """

    request_id: RequestId
    user: Name
    ok: bool = True
    reason: Label = ""


# --- any time after the handshake --------------------------------------------------------


class Heartbeat(_Tagged, frozen=True):
    """Either way: proof of life. Carries nothing."""


class Notice(_Tagged, frozen=True):
    """Master → slave: over-use, grace or enforcement news for the operators.

    ``kind``: e.g. ``"overuse"``, ``"grace"``, ``"enforcement"``, ``"overuse_ended"``.
    ``severity``: rises as the deadline nears (``info`` at opening, ``warning`` at 24 h left,
    ``urgent`` at 4 h left, ``critical`` at expiry). ``deadline``: the grace deadline, if any.
    """

    kind: Name
    agent_class: AgentClass
    severity: Literal["info", "warning", "urgent", "critical"]
    deadline: EpochSeconds | None = None
    text: Text = ""


class Reclaimed(_Tagged, frozen=True):
    """Master → slave: an operator at the master released ``user``'s seat (``reason``
    ``"operator"``); the slave no longer holds it. Sent only to a slave whose Hello named the
    capability :data:`RECLAIM` (an older one could not decode it), from Welcome on.
    """

    user: Name
    reason: Label = "operator"
    text: Text = ""


RECLAIM = "reclaim"
"""The Hello capability of a slave that understands :class:`Reclaimed`."""


class Goodbye(_Tagged, frozen=True):
    """Either way: the sender closes the connection cleanly and sends nothing more."""

    reason: Text = ""


class Error(_Tagged, frozen=True):
    """Either way: the sender hit an error (``code``, ``text``) and closes the connection.

    A master that is a standby (another master is active on the same ledger) answers a
    connection with ``code`` :data:`STANDBY`: the slave tries its other master at once.
    """

    code: Name
    text: Text = ""


STANDBY = "standby"
"""The Error code of a standby master: not serving sites now; try the other master."""


Message: TypeAlias = (
    Hello
    | Welcome
    | Sync
    | SyncDone
    | Acquire
    | Granted
    | Refused
    | Release
    | Released
    | Heartbeat
    | Notice
    | Reclaimed
    | Goodbye
    | Error
)
"""Any top-level message."""

MESSAGE_TYPES: tuple[type[Message], ...] = (
    Hello,
    Welcome,
    Sync,
    SyncDone,
    Acquire,
    Granted,
    Refused,
    Release,
    Released,
    Heartbeat,
    Notice,
    Reclaimed,
    Goodbye,
    Error,
)

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] = msgspec.msgpack.Decoder(Message)

encode_message = _encoder.encode
"""Encode one message to its MessagePack payload (no frame header)."""


def decode_message(payload: bytes | bytearray | memoryview) -> Message:
    """Decode one payload into a message.

    Raises:
        msgspec.DecodeError: the payload is not a well-formed, valid message (the caller
            translates it into a protocol error).
    """
    return _decoder.decode(payload)
