"""The seatledger wire protocol.

This package's top level is the sans-IO core, in the style of h11: a :class:`Connection`
turns received bytes into messages and messages into bytes to send, enforcing the framing,
the message schema and the state table in ``_state.py``. It does no I/O and never imports
trio. The TLS side lives in the submodules :mod:`transport.pki` (private CA, certificates)
and :mod:`transport.tls` (SSL contexts, peer identity).
"""

from ._connection import CLOSED, DEFAULT_MAX_PENDING, NEED_DATA, Connection, Sentinel
from ._errors import CertificateError, LocalProtocolError, ProtocolError, RemoteProtocolError
from ._frames import (
    DEFAULT_MAX_FRAME_SIZE,
    HEADER_SIZE,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    FrameReader,
    frame,
)
from ._messages import (
    MESSAGE_TYPES,
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
    Refused,
    Release,
    Released,
    Sync,
    SyncDone,
    Welcome,
    decode_message,
    encode_message,
)
from ._state import PEER_TRANSITIONS, TRANSITIONS, Role, State

__all__ = [
    "CLOSED",
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_PENDING",
    "HEADER_SIZE",
    "MESSAGE_TYPES",
    "NEED_DATA",
    "PEER_TRANSITIONS",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "TRANSITIONS",
    "Acquire",
    "CertificateError",
    "Connection",
    "Error",
    "FrameReader",
    "Goodbye",
    "Granted",
    "HeldSeat",
    "Heartbeat",
    "Hello",
    "LocalProtocolError",
    "Message",
    "Notice",
    "OfflineEvent",
    "ProtocolError",
    "Refused",
    "Release",
    "Released",
    "RemoteProtocolError",
    "Role",
    "Sentinel",
    "State",
    "Sync",
    "SyncDone",
    "Welcome",
    "decode_message",
    "encode_message",
    "frame",
]
