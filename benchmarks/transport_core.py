"""How many Acquire messages per second the sans-IO core encodes and parses, round trip.

Prints one JSON object. Each figure is the best of several runs of N messages through a
client ``Connection.send`` and a server ``Connection.receive_data`` + ``next_event``:
``acquire_roundtrip_per_s`` feeds each frame on its own (worst case: one read per message),
``acquire_roundtrip_batched_per_s`` feeds 256 frames per read (as under load), and
``request_reply_per_s`` adds the Granted answer going back to the client.
"""

from __future__ import annotations

import json
import platform
import sys
import time

import msgspec

from transport import (
    NEED_DATA,
    Acquire,
    Connection,
    Granted,
    Hello,
    Role,
    Sync,
    SyncDone,
    Welcome,
)

N = 200_000
ROUNDS = 5
BATCH = 256


def _ready_pair() -> tuple[Connection, Connection]:
    client = Connection(Role.CLIENT, max_pending=N + 1)
    server = Connection(Role.SERVER, max_pending=N + 1, peer_site="bench")
    for sender, receiver, message in (
        (client, server, Hello("bench", 1)),
        (server, client, Welcome("s", 10.0)),
        (client, server, Sync()),
        (server, client, SyncDone(0, 0, 0)),
    ):
        receiver.receive_data(sender.send(message))
        assert receiver.next_event() == message
    return client, server


def _messages() -> list[Acquire]:
    return [Acquire(i, f"agent{i % 5000}", "PRED", "acme", "outbound-sales") for i in range(N)]


def one_by_one() -> float:
    """Seconds for N Acquires, each frame fed separately."""
    client, server = _ready_pair()
    messages = _messages()
    start = time.perf_counter()
    for message in messages:
        server.receive_data(client.send(message))
        server.next_event()
    return time.perf_counter() - start


def batched() -> float:
    """Seconds for N Acquires, BATCH frames per receive_data."""
    client, server = _ready_pair()
    messages = _messages()
    start = time.perf_counter()
    for i in range(0, N, BATCH):
        server.receive_data(b"".join([client.send(m) for m in messages[i : i + BATCH]]))
        while server.next_event() is not NEED_DATA:
            pass
    return time.perf_counter() - start


def request_reply() -> float:
    """Seconds for N Acquire + Granted exchanges, BATCH per read each way."""
    client, server = _ready_pair()
    messages = _messages()
    start = time.perf_counter()
    for i in range(0, N, BATCH):
        server.receive_data(b"".join([client.send(m) for m in messages[i : i + BATCH]]))
        replies = []
        while (event := server.next_event()) is not NEED_DATA:
            assert isinstance(event, Acquire)
            replies.append(server.send(Granted(event.request_id, "seat")))
        client.receive_data(b"".join(replies))
        while client.next_event() is not NEED_DATA:
            pass
    return time.perf_counter() - start


def main() -> None:
    """Run every measurement and print one JSON object."""
    best = {
        name: min(fn() for _ in range(ROUNDS))
        for name, fn in (
            ("acquire_roundtrip_per_s", one_by_one),
            ("acquire_roundtrip_batched_per_s", batched),
            ("request_reply_per_s", request_reply),
        )
    }
    frame_bytes = len(_ready_pair()[0].send(_messages()[0]))
    print(
        json.dumps(
            {
                "messages": N,
                **{name: round(N / seconds) for name, seconds in best.items()},
                "acquire_frame_bytes": frame_bytes,
                "python": platform.python_version(),
                "msgspec": msgspec.__version__,
                "platform": sys.platform,
            }
        )
    )


if __name__ == "__main__":
    main()
