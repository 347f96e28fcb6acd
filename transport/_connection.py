"""The sans-IO connection: bytes in, messages out; messages in, bytes out.

No sockets, no trio, no clock. The shell feeds received bytes to
:meth:`Connection.receive_data`, drains :meth:`Connection.next_event` until it returns
:data:`NEED_DATA`, and writes whatever :meth:`Connection.send` returns.
"""

from __future__ import annotations

import enum
from typing import Final, Literal

import msgspec

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._frames import DEFAULT_MAX_FRAME_SIZE, SUPPORTED_VERSIONS, FrameReader, frame
from ._messages import (
    Acquire,
    Error,
    Goodbye,
    Granted,
    Hello,
    Message,
    Refused,
    Release,
    Released,
    Sync,
    decode_message,
    encode_message,
)
from ._state import (
    INITIAL_STATE,
    PEER_TRANSITIONS,
    TRANSITIONS,
    Role,
    State,
    transition_key,
)

__all__ = ["CLOSED", "DEFAULT_MAX_PENDING", "NEED_DATA", "Connection", "Sentinel"]

DEFAULT_MAX_PENDING = 4096


class Sentinel(enum.Enum):
    """What :meth:`Connection.next_event` returns when it has no message."""

    NEED_DATA = "NEED_DATA"
    CLOSED = "CLOSED"


NEED_DATA: Final = Sentinel.NEED_DATA
"""No whole message buffered: feed more bytes."""
CLOSED: Final = Sentinel.CLOSED
"""The peer closed the byte stream (after its last whole message)."""

# Which requests each answer may answer (Refused answers either kind).
_ANSWERS: Final[dict[type[Message], tuple[type[Message], ...]]] = {
    Granted: (Acquire,),
    Refused: (Acquire, Release),
    Released: (Release,),
}
_LEAVING: Final = (Goodbye, Error)


class Connection:
    """One end of a seatledger connection, as a state machine (see ``_state.py``).

    ``role`` is :attr:`Role.CLIENT` for a slave connector, :attr:`Role.SERVER` for the master.
    ``peer_site``, if given, is the site name the peer's certificate proves: a Hello naming
    another site is a protocol error, so a slave can never act for another site.
    ``max_pending`` bounds the requests awaiting an answer.

    After a :class:`RemoteProtocolError` the connection stays failed: every later
    :meth:`next_event` raises again, and :meth:`send` only accepts Error or Goodbye. A
    :class:`LocalProtocolError` from :meth:`send` changes nothing (no bytes were produced).
    """

    __slots__ = (
        "_eof",
        "_last_seq",
        "_max_frame_size",
        "_max_pending",
        "_peer_site",
        "_pending",
        "_reader",
        "_remote_error",
        "_states",
        "our_role",
        "their_role",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_pending: int = DEFAULT_MAX_PENDING,
        peer_site: str | None = None,
    ) -> None:
        self.our_role: Final = role
        self.their_role: Final = role.peer
        self._states = dict(INITIAL_STATE)
        self._reader = FrameReader(max_frame_size)
        self._max_frame_size = max_frame_size
        self._max_pending = max_pending
        self._peer_site = peer_site
        self._pending: dict[int, type[Message]] = {}
        self._last_seq = 0
        self._eof = False
        self._remote_error: RemoteProtocolError | None = None

    # --- inspection -----------------------------------------------------------------------

    @property
    def our_state(self) -> State:
        """Our party's state."""
        return self._states[self.our_role]

    @property
    def their_state(self) -> State:
        """The peer's state, as far as we have seen."""
        return self._states[self.their_role]

    @property
    def pending_requests(self) -> int:
        """Requests (Acquire, Release) sent or received and not yet answered."""
        return len(self._pending)

    @property
    def buffered(self) -> int:
        """Received bytes not yet returned as messages."""
        return self._reader.buffered

    # --- receiving ------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the peer; ``b""`` means the peer closed the stream.

        Raises:
            LocalProtocolError: data fed after the end of the stream.
        """
        if self._eof:
            if data:
                raise LocalProtocolError("data received after the end of the stream")
            return
        if data:
            self._reader.feed(data)
        else:
            self._eof = True

    def next_event(self) -> Message | Literal[Sentinel.NEED_DATA, Sentinel.CLOSED]:
        """Return the next message from the peer, :data:`NEED_DATA` or :data:`CLOSED`.

        Raises:
            RemoteProtocolError: the peer sent a malformed, oversized, unknown-version,
                unknown-type or out-of-state frame, or closed the stream inside a frame.
        """
        if self._remote_error is not None:
            error = self._remote_error
            raise RemoteProtocolError(f"connection already failed: {error}", error.code) from error
        try:
            payload = self._reader.next_payload()
            if payload is None:
                if not self._eof:
                    return NEED_DATA
                if self._reader.buffered:
                    raise RemoteProtocolError("stream closed inside a frame", "truncated_frame")
                self._states[self.their_role] = State.CLOSED
                return CLOSED
            try:
                message = decode_message(payload)
            except (ValueError, RecursionError) as exc:  # msgspec.DecodeError, bad UTF-8
                raise RemoteProtocolError(f"malformed message: {exc}", _decode_code(exc)) from exc
            sender = self.their_role
            new_state = self._validate(sender, message, RemoteProtocolError)
            self._commit(sender, message, new_state)
        except RemoteProtocolError as exc:
            self._remote_error = exc
            self._states[self.their_role] = State.ERROR
            raise
        return message

    # --- sending --------------------------------------------------------------------------

    def send(self, message: Message) -> bytes:
        """Return the bytes to write to the peer for ``message``.

        Raises:
            LocalProtocolError: ``message`` is not allowed in the current state, answers no
                outstanding request, repeats one, or does not fit in a frame; or the peer has
                gone and ``message`` is neither Error nor Goodbye.
        """
        sender = self.our_role
        if (
            self._states[self.their_role] in (State.CLOSED, State.ERROR)
            and type(message) not in _LEAVING
        ):
            raise LocalProtocolError(
                f"peer is {self._states[self.their_role].name}: only Goodbye or Error may be sent",
                "peer_closed",
            )
        new_state = self._validate(sender, message, LocalProtocolError)
        data = frame(encode_message(message), self._max_frame_size)
        self._commit(sender, message, new_state)
        return data

    # --- the rules ------------------------------------------------------------------------

    def _validate(self, sender: Role, message: Message, error: type[ProtocolError]) -> State:
        """Check ``message`` from ``sender`` against the rules; return the sender's next state."""
        state = self._states[sender]
        new_state = TRANSITIONS[sender][state].get(transition_key(message))
        if new_state is None:
            raise error(
                f"{sender.value} may not send {type(message).__name__} in state {state.name}",
                "out_of_state",
            )
        if isinstance(message, Acquire | Release):
            if message.request_id in self._pending:
                raise error(
                    f"request id {message.request_id} is already outstanding",
                    "duplicate_request",
                )
            if len(self._pending) >= self._max_pending:
                raise error(
                    f"more than {self._max_pending} requests outstanding", "too_many_requests"
                )
        elif isinstance(message, Granted | Refused | Released):
            asked = self._pending.get(message.request_id)
            if asked is None or asked not in _ANSWERS[type(message)]:
                raise error(
                    f"{type(message).__name__} answers no outstanding request "
                    f"with id {message.request_id}",
                    "unexpected_answer",
                )
        elif isinstance(message, Sync):
            last = self._last_seq
            for event in message.events:
                if event.seq <= last:
                    raise error(f"offline event seq {event.seq} does not increase", "bad_sync")
                last = event.seq
        elif isinstance(message, Hello):
            if message.version not in SUPPORTED_VERSIONS:
                raise error(
                    f"protocol version {message.version} not supported", "unsupported_version"
                )
            if sender is self.their_role and self._peer_site not in (None, message.site):
                raise error(
                    f"Hello names site {message.site!r}, the certificate names {self._peer_site!r}",
                    "identity_mismatch",
                )
        return new_state

    def _commit(self, sender: Role, message: Message, new_state: State) -> None:
        """Apply a validated ``message``: states, outstanding requests, sync progress."""
        if isinstance(message, Acquire | Release):
            self._pending[message.request_id] = type(message)
        elif isinstance(message, Granted | Refused | Released):
            del self._pending[message.request_id]
        elif isinstance(message, Sync) and message.events:
            self._last_seq = message.events[-1].seq
        states = self._states
        states[sender] = new_state
        peer = PEER_TRANSITIONS.get(transition_key(message))
        if peer is not None and states[sender.peer] is peer[0]:
            states[sender.peer] = peer[1]


def _decode_code(exc: Exception) -> str:
    """The error code for a payload that did not decode."""
    # msgspec reports a tag it does not know as an invalid value at the array's first slot.
    if isinstance(exc, msgspec.ValidationError) and str(exc).endswith("at `$[0]`"):
        return "unknown_message"
    return "bad_message"
