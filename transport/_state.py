"""The protocol's states and transitions: the one table a reader checks the protocol against.

Theory of operation
===================

A connection has two parties, the CLIENT (a slave connector) and the SERVER (the master).
As in h11, we track the state of *each party separately*, and both ends of a connection run
the same model: the master tracks its own state and the slave's, and so does the slave. Two
states are needed because messages cross in flight: the slave may send Acquire while the
master's Goodbye is on its way, and neither side did anything wrong.

A message changes state in two ways:

1. The sender's own state moves as :data:`TRANSITIONS` says. A message that is not in the
   table for the sender's current state is a protocol violation: LocalProtocolError if we
   tried to send it, RemoteProtocolError if the peer sent it.
2. A few messages also move the *other* party out of a waiting state
   (:data:`PEER_TRANSITIONS`): the server's Welcome releases a client waiting for it, and so
   on. They only ever fire during the handshake, where the parties strictly take turns, so
   both ends see them in the same order.

The life of a connection::

    CLIENT (slave)                                  SERVER (master)
    SEND_HELLO      --Hello------------------->     AWAIT_HELLO    -> SEND_WELCOME
    AWAIT_WELCOME   <-------------Welcome-----      SEND_WELCOME   -> AWAIT_SYNC
    SEND_SYNC       --Sync(more=True)--------->     AWAIT_SYNC        (zero or more chunks)
    SEND_SYNC       --Sync(more=False)-------->     AWAIT_SYNC     -> SEND_SYNC_DONE
    AWAIT_SYNC_DONE <-------------SyncDone----      SEND_SYNC_DONE -> READY
    READY           --Acquire / Release------->     READY
    READY           <--Granted/Refused/Released     READY
    either          --Goodbye or Error-------->     the sender is CLOSED

Every connection syncs, even a first one with an empty journal, so after each (re)connection
the master knows exactly which seats the site holds. Acquire and Release are only allowed
once both sides are READY. Heartbeat flows both ways from Welcome on; Notice and Reclaimed
(an operator released a seat; only to a slave that announced the ``reclaim`` capability)
flow from the server from Welcome on. Goodbye and Error end the sender's side from any open
state; after that the sender sends nothing more.

Two states are not in the table: ERROR (the party broke the protocol; entered by the
connection when it raises RemoteProtocolError for the peer) and the pairing of requests with
answers (each Granted/Refused/Released must answer an outstanding request id), which the
connection keeps beside the state because it is per request, not per party.
"""

from __future__ import annotations

import enum
from typing import Final

from ._messages import (
    Acquire,
    Error,
    Goodbye,
    Granted,
    Heartbeat,
    Hello,
    Message,
    Notice,
    Reclaimed,
    Refused,
    Release,
    Released,
    Sync,
    SyncDone,
    Welcome,
)

__all__ = [
    "INITIAL_STATE",
    "PEER_TRANSITIONS",
    "SYNC_MORE",
    "TRANSITIONS",
    "Role",
    "State",
    "TransitionKey",
    "transition_key",
]


class Role(enum.Enum):
    """Which end of the connection: CLIENT is the slave connector, SERVER the master."""

    CLIENT = "client"
    SERVER = "server"

    # Members are singletons compared by identity; the C-level identity hash replaces Enum's
    # Python-level one, which otherwise dominated the cost of each message.
    __hash__ = object.__hash__

    @property
    def peer(self) -> Role:
        """The other role."""
        return Role.SERVER if self is Role.CLIENT else Role.CLIENT


class State(enum.Enum):
    """The state of one party. ``SEND_X``: its turn to send X; ``AWAIT_X``: waiting for X."""

    # client
    SEND_HELLO = "SEND_HELLO"
    AWAIT_WELCOME = "AWAIT_WELCOME"
    SEND_SYNC = "SEND_SYNC"
    AWAIT_SYNC_DONE = "AWAIT_SYNC_DONE"
    # server
    AWAIT_HELLO = "AWAIT_HELLO"
    SEND_WELCOME = "SEND_WELCOME"
    AWAIT_SYNC = "AWAIT_SYNC"
    SEND_SYNC_DONE = "SEND_SYNC_DONE"
    # both
    READY = "READY"
    CLOSED = "CLOSED"
    ERROR = "ERROR"

    __hash__ = object.__hash__  # see Role


class _SyncMore:
    """Table key for a Sync chunk with ``more=True`` (it keeps the client in SEND_SYNC)."""


SYNC_MORE: Final = _SyncMore
TransitionKey = type[Message] | type[_SyncMore]


def transition_key(message: Message) -> TransitionKey:
    """The key under which ``message`` appears in the tables."""
    if type(message) is Sync and message.more:
        return SYNC_MORE
    return type(message)


INITIAL_STATE: Final[dict[Role, State]] = {
    Role.CLIENT: State.SEND_HELLO,
    Role.SERVER: State.AWAIT_HELLO,
}

_LEAVE: Final[dict[TransitionKey, State]] = {Goodbye: State.CLOSED, Error: State.CLOSED}

# TRANSITIONS[sender's role][sender's state][message sent] = sender's next state
TRANSITIONS: Final[dict[Role, dict[State, dict[TransitionKey, State]]]] = {
    Role.CLIENT: {
        State.SEND_HELLO: {Hello: State.AWAIT_WELCOME, **_LEAVE},
        State.AWAIT_WELCOME: {**_LEAVE},
        State.SEND_SYNC: {
            SYNC_MORE: State.SEND_SYNC,
            Sync: State.AWAIT_SYNC_DONE,
            Heartbeat: State.SEND_SYNC,
            **_LEAVE,
        },
        State.AWAIT_SYNC_DONE: {Heartbeat: State.AWAIT_SYNC_DONE, **_LEAVE},
        State.READY: {
            Acquire: State.READY,
            Release: State.READY,
            Heartbeat: State.READY,
            **_LEAVE,
        },
        State.CLOSED: {},
        State.ERROR: {},
    },
    Role.SERVER: {
        State.AWAIT_HELLO: {**_LEAVE},
        State.SEND_WELCOME: {Welcome: State.AWAIT_SYNC, **_LEAVE},
        State.AWAIT_SYNC: {
            Heartbeat: State.AWAIT_SYNC,
            Notice: State.AWAIT_SYNC,
            Reclaimed: State.AWAIT_SYNC,
            **_LEAVE,
        },
        State.SEND_SYNC_DONE: {
            SyncDone: State.READY,
            Heartbeat: State.SEND_SYNC_DONE,
            Notice: State.SEND_SYNC_DONE,
            Reclaimed: State.SEND_SYNC_DONE,
            **_LEAVE,
        },
        State.READY: {
            Granted: State.READY,
            Refused: State.READY,
            Released: State.READY,
            Heartbeat: State.READY,
            Notice: State.READY,
            Reclaimed: State.READY,
            **_LEAVE,
        },
        State.CLOSED: {},
        State.ERROR: {},
    },
}

# PEER_TRANSITIONS[message sent] = (other party's state before, after); fires only if the
# other party is in the "before" state (it may already have said Goodbye).
PEER_TRANSITIONS: Final[dict[TransitionKey, tuple[State, State]]] = {
    Hello: (State.AWAIT_HELLO, State.SEND_WELCOME),
    Welcome: (State.AWAIT_WELCOME, State.SEND_SYNC),
    Sync: (State.AWAIT_SYNC, State.SEND_SYNC_DONE),
    SyncDone: (State.AWAIT_SYNC_DONE, State.READY),
}
