"""The seatledger wire protocol.

This package's top level is the sans-IO core, in the style of h11: a :class:`Connection`
turns received bytes into messages and messages into bytes to send, enforcing the framing,
the message schema and the state table in ``_state.py``. It does no I/O and never imports
trio. The TLS side lives in the submodules :mod:`transport.pki` (private CA, certificates)
and :mod:`transport.tls` (SSL contexts, peer identity).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import CertificateError, LocalProtocolError, ProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from ._connection import CLOSED, DEFAULT_MAX_PENDING, NEED_DATA, Connection, Sentinel
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
        Reclaimed,
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


# The core's modules load on first use (PEP 562), so that what needs only the errors, or only
# the stdlib local-socket client (the seat commands), does not pay for msgspec.
_SUBMODULES = {
    "._connection": ("CLOSED", "DEFAULT_MAX_PENDING", "NEED_DATA", "Connection", "Sentinel"),
    "._frames": ("DEFAULT_MAX_FRAME_SIZE", "HEADER_SIZE", "PROTOCOL_VERSION",
                 "SUPPORTED_VERSIONS", "FrameReader", "frame"),
    "._messages": ("MESSAGE_TYPES", "Acquire", "Error", "Goodbye", "Granted", "Heartbeat",
                   "HeldSeat", "Hello", "Message", "Notice", "OfflineEvent", "Reclaimed",
                   "Refused", "Release", "Released", "Sync", "SyncDone", "Welcome",
                   "decode_message", "encode_message"),
    "._state": ("PEER_TRANSITIONS", "TRANSITIONS", "Role", "State"),
}
_LAZY = {name: module for module, names in _SUBMODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


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
    "Reclaimed",
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
