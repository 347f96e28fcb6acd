"""The sans-IO protocol core: framing, messages, the state table. No I/O."""

from __future__ import annotations

import struct
from collections.abc import Iterable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.strategies import acquire_batches, any_message, msgpack_values
from transport import (
    CLOSED,
    HEADER_SIZE,
    MESSAGE_TYPES,
    NEED_DATA,
    PROTOCOL_VERSION,
    Acquire,
    Connection,
    Error,
    Goodbye,
    Granted,
    Heartbeat,
    HeldSeat,
    Hello,
    LocalProtocolError,
    Message,
    Notice,
    OfflineEvent,
    Reclaimed,
    Refused,
    Release,
    Released,
    RemoteProtocolError,
    Role,
    State,
    Sync,
    SyncDone,
    Welcome,
    decode_message,
    encode_message,
)

CLIENT, SERVER = Role.CLIENT, Role.SERVER

# --- helpers --------------------------------------------------------------------------------


def raw_frame(payload: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """A frame built by hand, bypassing the checks of ``send``."""
    return struct.pack(">IB", len(payload), version) + payload


def drain(connection: Connection) -> list[Message]:
    """Every whole message buffered in ``connection``."""
    events: list[Message] = []
    while True:
        event = connection.next_event()
        if event is NEED_DATA or event is CLOSED:
            return events
        events.append(event)


def deliver(sender: Connection, receiver: Connection, message: Message) -> Message:
    """Send one message across and return what the receiver parsed."""
    receiver.receive_data(sender.send(message))
    (event,) = drain(receiver)
    return event


# A whole conversation that uses every message type once or more.
CONVERSATION: list[tuple[Role, Message]] = [
    (CLIENT, Hello("paris", 1, ("chunked-sync",))),
    (SERVER, Welcome("session-1", 15.0, {"PRED": 80, "ACD": 20})),
    (SERVER, Heartbeat()),
    (CLIENT, Sync((OfflineEvent(1, "grant", "u1", "PRED", "acme", "c1", 1.7e9),), (), True)),
    (SERVER, Notice("overuse", "PRED", "info", 1.7e9 + 48 * 3600, "over the limit")),
    (
        CLIENT,
        Sync(
            (OfflineEvent(2, "release", "u1", "PRED", "acme", "c1", 1.7e9 + 60),),
            (HeldSeat("u2", "ACD", "acme", "c2"),),
        ),
    ),
    (SERVER, SyncDone(applied=2, skipped=0, reconciled=1)),
    (CLIENT, Acquire(1, "u3", "PRED", "acme", "c1")),
    (CLIENT, Acquire(2, "u4", "PRED", "acme", "c1")),
    (CLIENT, Release(3, "u2")),
    (SERVER, Granted(1, "paris/u3")),
    (SERVER, Granted(2, "paris/u4", "overuse", 1.7e9 + 48 * 3600)),
    (SERVER, Released(3, "u2")),
    (SERVER, Reclaimed("u3", "operator", "an operator at the master released this seat")),
    (CLIENT, Acquire(4, "u5", "VIR")),
    (SERVER, Refused(4, "limit_enforced", "grace spent")),
    (CLIENT, Release(5, "nobody")),
    (SERVER, Released(5, "nobody", ok=False, reason="unknown_seat")),
    (CLIENT, Heartbeat()),
    (CLIENT, Goodbye("shutting down")),
    (SERVER, Error("internal", "bye anyway")),
]


def connected() -> tuple[Connection, Connection]:
    """A client and a server connection, READY, with the peer site "paris"."""
    client, server = Connection(CLIENT), Connection(SERVER, peer_site="paris")
    deliver(client, server, Hello("paris", 1))
    deliver(server, client, Welcome("s", 10.0))
    deliver(client, server, Sync())
    deliver(server, client, SyncDone(0, 0, 0))
    return client, server


def answer(server: Connection, event: Message) -> bytes:
    """What a minimal master says to ``event`` during the handshake."""
    if isinstance(event, Hello):
        return server.send(Welcome("s", 10.0))
    if isinstance(event, Sync) and not event.more:
        return server.send(SyncDone(0, 0, 0))
    return b""


def serve(server: Connection, data: bytes) -> tuple[list[Message], bytes]:
    """Feed ``data`` to ``server``, answering the handshake: the messages and the replies."""
    server.receive_data(data)
    events: list[Message] = []
    replies = bytearray()
    while (event := server.next_event()) is not NEED_DATA and event is not CLOSED:
        events.append(event)
        replies += answer(server, event)
    return events, bytes(replies)


def client_stream(messages: Iterable[Message]) -> tuple[bytes, list[Message]]:
    """The bytes a client sends for the handshake and then ``messages``, and those messages."""
    client, server = Connection(CLIENT), Connection(SERVER, peer_site="paris")
    data = bytearray()
    sent: list[Message] = []
    for message in [Hello("paris", 1), Sync(), *messages]:
        one = client.send(message)
        data += one
        sent.append(message)
        reply = serve(server, one)[1]
        if reply:  # b"" would mean end of stream
            client.receive_data(reply)
            drain(client)
    return bytes(data), sent


# --- messages -------------------------------------------------------------------------------


def test_the_conversation_uses_every_message_type() -> None:
    assert {type(message) for _, message in CONVERSATION} == set(MESSAGE_TYPES)


def test_every_message_round_trips_through_a_pair_of_connections() -> None:
    ends = {CLIENT: Connection(CLIENT), SERVER: Connection(SERVER, peer_site="paris")}
    for role, message in CONVERSATION:
        assert deliver(ends[role], ends[role.peer], message) == message
    assert ends[CLIENT].our_state is State.CLOSED
    assert ends[SERVER].our_state is State.CLOSED


@given(message=any_message)
def test_any_message_survives_encode_then_decode(message: Message) -> None:
    assert decode_message(encode_message(message)) == message


def test_messages_are_immutable() -> None:
    message = Acquire(1, "u", "PRED")
    with pytest.raises(AttributeError):
        message.user = "other"  # type: ignore[misc]


def test_acquire_travels_as_a_tagged_array() -> None:
    payload = encode_message(Acquire(7, "u1", "PRED", "acme", "sales"))
    assert msgspec.msgpack.decode(payload) == ["Acquire", 7, "u1", "PRED", "acme", "sales"]


# --- chunking and garbage -------------------------------------------------------------------

@given(messages=acquire_batches, cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_parsed_messages_do_not_depend_on_how_the_stream_is_split(
    messages: list[Acquire], cuts: list[int]
) -> None:
    data, expected = client_stream(messages)
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    server = Connection(SERVER, peer_site="paris")
    received: list[Message] = []
    for chunk in chunks:
        if chunk:  # b"" would mean end of stream
            received += serve(server, chunk)[0]
    assert received == expected
    assert server.buffered == 0


def test_server_answers_its_way_through_a_byte_at_a_time_stream() -> None:
    client, server = Connection(CLIENT), Connection(SERVER, peer_site="paris")
    data = client.send(Hello("paris", 1))
    for byte in data:
        assert server.next_event() is NEED_DATA
        server.receive_data(bytes([byte]))
    assert server.next_event() == Hello("paris", 1)
    assert server.next_event() is NEED_DATA


def _feed_only_protocol_errors(role: Role, chunks: list[bytes], eof: bool) -> None:
    connection = Connection(role)
    try:
        for chunk in chunks:
            connection.receive_data(chunk)
            drain(connection)
        if eof:
            connection.receive_data(b"")
            drain(connection)
    except RemoteProtocolError:
        with pytest.raises(RemoteProtocolError):
            connection.next_event()


@settings(max_examples=300)
@given(
    role=st.sampled_from(Role),
    chunks=st.lists(st.binary(min_size=1, max_size=64), max_size=10),
    eof=st.booleans(),
)
def test_garbage_bytes_only_ever_raise_remote_protocol_error(
    role: Role, chunks: list[bytes], eof: bool
) -> None:
    _feed_only_protocol_errors(role, chunks, eof)


@settings(max_examples=300)
@given(
    role=st.sampled_from(Role),
    payloads=st.lists(st.binary(min_size=1, max_size=64), max_size=5),
    eof=st.booleans(),
)
def test_garbage_inside_well_formed_frames_only_raises_remote_protocol_error(
    role: Role, payloads: list[bytes], eof: bool
) -> None:
    _feed_only_protocol_errors(role, [raw_frame(p) for p in payloads], eof)


@settings(max_examples=300)
@given(
    role=st.sampled_from(Role),
    arrays=st.lists(
        st.tuples(st.sampled_from([t.__name__ for t in MESSAGE_TYPES]), st.lists(msgpack_values)),
        max_size=5,
    ),
)
def test_wrongly_typed_fields_only_raise_remote_protocol_error(
    role: Role, arrays: list[tuple[str, list[object]]]
) -> None:
    frames = [raw_frame(msgspec.msgpack.encode([tag, *fields])) for tag, fields in arrays]
    _feed_only_protocol_errors(role, frames, eof=False)


@settings(max_examples=300)
@given(role=st.sampled_from(Role), messages=st.lists(any_message, max_size=8))
def test_valid_messages_in_any_order_only_raise_remote_protocol_error(
    role: Role, messages: list[Message]
) -> None:
    _feed_only_protocol_errors(role, [raw_frame(encode_message(m)) for m in messages], eof=True)


# --- remote protocol errors -----------------------------------------------------------------


def test_an_oversized_frame_is_refused_as_soon_as_its_header_arrives() -> None:
    server = Connection(SERVER, max_frame_size=1024)
    server.receive_data(struct.pack(">IB", 1025, PROTOCOL_VERSION))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.code == "frame_too_large"


def test_the_default_frame_limit_is_64_kib() -> None:
    server = Connection(SERVER)
    server.receive_data(struct.pack(">IB", 64 * 1024 + 1, PROTOCOL_VERSION))
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_an_unknown_protocol_version_is_refused() -> None:
    server = Connection(SERVER)
    server.receive_data(raw_frame(encode_message(Hello("paris", 1)), version=2))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.code == "unsupported_version"


def test_a_hello_for_an_unknown_protocol_version_is_refused() -> None:
    server = Connection(SERVER)
    server.receive_data(raw_frame(msgspec.msgpack.encode(["Hello", "paris", 9, []])))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.code == "unsupported_version"


def test_an_unknown_message_type_is_refused() -> None:
    server = Connection(SERVER)
    server.receive_data(raw_frame(msgspec.msgpack.encode(["Promote", "paris"])))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.code == "unknown_message"


def test_a_payload_that_is_not_msgpack_is_refused() -> None:
    server = Connection(SERVER)
    server.receive_data(raw_frame(b"\xc1"))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.code == "bad_message"


@pytest.mark.parametrize("bad_time", [float("nan"), float("inf"), -1.0])
def test_a_time_that_is_not_a_plausible_epoch_is_refused(bad_time: float) -> None:
    client, _ = connected()
    client.send(Acquire(1, "u", "PRED"))
    client.receive_data(raw_frame(msgspec.msgpack.encode(["Granted", 1, "s", "overuse", bad_time])))
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_acquire_before_hello_is_refused() -> None:
    server = Connection(SERVER)
    server.receive_data(raw_frame(encode_message(Acquire(1, "u", "PRED"))))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.code == "out_of_state"
    assert server.their_state is State.ERROR


def test_acquire_before_the_sync_is_done_is_refused() -> None:
    client, server = Connection(CLIENT), Connection(SERVER)
    deliver(client, server, Hello("paris", 1))
    deliver(server, client, Welcome("s", 10.0))
    server.receive_data(raw_frame(encode_message(Acquire(1, "u", "PRED"))))
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_reclaimed_may_come_from_welcome_on_like_a_notice() -> None:
    client, server = Connection(CLIENT), Connection(SERVER, peer_site="paris")
    with pytest.raises(LocalProtocolError):
        server.send(Reclaimed("u1"))  # no Hello yet: nothing to reclaim from
    deliver(client, server, Hello("paris", 1, ("reclaim",)))
    deliver(server, client, Welcome("s", 10.0))
    assert deliver(server, client, Reclaimed("u1")) == Reclaimed("u1", "operator", "")
    deliver(client, server, Sync())
    assert deliver(server, client, Reclaimed("u2")) == Reclaimed("u2")  # sync being applied
    deliver(server, client, SyncDone(0, 0, 0))
    assert deliver(server, client, Reclaimed("u3")) == Reclaimed("u3")
    assert client.our_state is State.READY and server.our_state is State.READY


def test_reclaimed_before_welcome_is_refused() -> None:
    client = Connection(CLIENT)
    client.send(Hello("paris", 1))
    client.receive_data(raw_frame(encode_message(Reclaimed("u1"))))
    with pytest.raises(RemoteProtocolError) as caught:
        client.next_event()
    assert caught.value.code == "out_of_state"


def test_reclaimed_from_the_client_is_refused() -> None:
    client, server = connected()
    with pytest.raises(LocalProtocolError):
        client.send(Reclaimed("u1"))
    server.receive_data(raw_frame(encode_message(Reclaimed("u1"))))
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_a_server_message_from_the_client_is_refused() -> None:
    client, server = connected()
    server.receive_data(raw_frame(encode_message(Welcome("s", 10.0))))
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_a_hello_naming_another_site_is_refused() -> None:
    client, server = Connection(CLIENT), Connection(SERVER, peer_site="paris")
    server.receive_data(client.send(Hello("lyon", 1)))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.code == "identity_mismatch"


def test_an_answer_to_no_outstanding_request_is_refused() -> None:
    client, server = connected()
    client.send(Release(1, "u"))
    client.receive_data(raw_frame(encode_message(Granted(1, "seat"))))
    with pytest.raises(RemoteProtocolError) as caught:
        client.next_event()
    assert caught.value.code == "unexpected_answer"


def test_a_repeated_outstanding_request_id_is_refused() -> None:
    client, server = connected()
    server.receive_data(client.send(Acquire(1, "u", "PRED")))
    server.receive_data(raw_frame(encode_message(Acquire(1, "v", "PRED"))))
    assert server.next_event() == Acquire(1, "u", "PRED")
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.code == "duplicate_request"


def test_too_many_outstanding_requests_are_refused() -> None:
    client, server = Connection(CLIENT), Connection(SERVER, max_pending=2)
    for sender, receiver, message in (
        (client, server, Hello("paris", 1)),
        (server, client, Welcome("s", 10.0)),
        (client, server, Sync()),
        (server, client, SyncDone(0, 0, 0)),
    ):
        deliver(sender, receiver, message)
    server.receive_data(b"".join(client.send(Acquire(i, f"u{i}", "PRED")) for i in range(3)))
    with pytest.raises(RemoteProtocolError) as caught:
        drain(server)
    assert caught.value.code == "too_many_requests"


def test_offline_events_must_arrive_in_increasing_sequence() -> None:
    client, server = Connection(CLIENT), Connection(SERVER)
    deliver(client, server, Hello("paris", 1))
    deliver(server, client, Welcome("s", 10.0))
    event = OfflineEvent(5, "grant", "u", "PRED", "", "", 1.0)
    deliver(client, server, Sync((event,), (), more=True))
    server.receive_data(raw_frame(encode_message(Sync((event,)))))
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.code == "bad_sync"


def test_a_message_after_goodbye_is_refused() -> None:
    client, server = connected()
    deliver(client, server, Goodbye())
    server.receive_data(raw_frame(encode_message(Heartbeat())))
    with pytest.raises(RemoteProtocolError):
        server.next_event()


def test_the_stream_ending_inside_a_frame_is_refused() -> None:
    client, server = Connection(CLIENT), Connection(SERVER)
    server.receive_data(client.send(Hello("paris", 1))[:-1])
    server.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as caught:
        server.next_event()
    assert caught.value.code == "truncated_frame"


def test_a_failed_connection_stays_failed_but_may_still_send_error() -> None:
    client, server = connected()
    server.receive_data(raw_frame(b"\xc1") + client.send(Acquire(1, "u", "PRED")))
    for _ in range(2):
        with pytest.raises(RemoteProtocolError):
            server.next_event()
    with pytest.raises(LocalProtocolError):
        server.send(Heartbeat())
    farewell = Error("bad_message", "bye")
    assert decode_message(server.send(farewell)[HEADER_SIZE:]) == farewell
    assert server.our_state is State.CLOSED


# --- local protocol errors ------------------------------------------------------------------


def test_the_client_may_not_acquire_before_hello() -> None:
    client = Connection(CLIENT)
    with pytest.raises(LocalProtocolError) as caught:
        client.send(Acquire(1, "u", "PRED"))
    assert caught.value.code == "out_of_state"


def test_the_server_may_not_welcome_before_hello() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send(Welcome("s", 10.0))


def test_the_server_may_not_answer_a_request_it_was_not_asked() -> None:
    client, server = connected()
    with pytest.raises(LocalProtocolError) as caught:
        server.send(Granted(1, "seat"))
    assert caught.value.code == "unexpected_answer"


def test_a_refused_send_changes_nothing() -> None:
    client, server = connected()
    client.send(Acquire(1, "u", "PRED"))
    with pytest.raises(LocalProtocolError):
        client.send(Acquire(1, "v", "PRED"))
    assert client.our_state is State.READY
    assert client.pending_requests == 1
    server.receive_data(client.send(Acquire(2, "v", "PRED")))
    assert drain(server) == [Acquire(2, "v", "PRED")]


def test_a_message_too_big_for_a_frame_cannot_be_sent() -> None:
    client = Connection(CLIENT, max_frame_size=64)
    with pytest.raises(LocalProtocolError) as caught:
        client.send(Hello("x" * 100, 1))
    assert caught.value.code == "frame_too_large"
    assert client.our_state is State.SEND_HELLO


def test_nothing_may_be_sent_after_goodbye() -> None:
    client, _ = connected()
    client.send(Goodbye())
    with pytest.raises(LocalProtocolError):
        client.send(Heartbeat())


def test_only_goodbye_or_error_may_follow_the_peers_goodbye() -> None:
    client, server = connected()
    server.receive_data(client.send(Acquire(1, "u", "PRED")) + client.send(Goodbye()))
    drain(server)
    with pytest.raises(LocalProtocolError) as caught:
        server.send(Granted(1, "seat"))
    assert caught.value.code == "peer_closed"
    server.send(Goodbye())


# --- the life of a connection ---------------------------------------------------------------


def test_the_server_waits_for_the_last_sync_chunk_before_sync_done() -> None:
    client, server = Connection(CLIENT), Connection(SERVER)
    deliver(client, server, Hello("paris", 1))
    deliver(server, client, Welcome("s", 10.0))
    deliver(client, server, Sync(more=True))
    assert server.our_state is State.AWAIT_SYNC
    with pytest.raises(LocalProtocolError):
        server.send(SyncDone(0, 0, 0))
    deliver(client, server, Sync())
    assert server.our_state is State.SEND_SYNC_DONE
    deliver(server, client, SyncDone(0, 0, 0))
    assert (client.our_state, server.our_state) == (State.READY, State.READY)


def test_messages_crossing_in_flight_are_not_errors() -> None:
    client, server = connected()
    to_server = client.send(Acquire(1, "u", "PRED"))
    to_client = server.send(Goodbye("maintenance"))
    client.receive_data(to_client)
    server.receive_data(to_server)
    assert drain(client) == [Goodbye("maintenance")]
    assert drain(server) == [Acquire(1, "u", "PRED")]
    assert client.their_state is State.CLOSED


def test_end_of_stream_between_frames_reads_as_closed() -> None:
    client, server = connected()
    server.receive_data(client.send(Heartbeat()))
    server.receive_data(b"")
    assert server.next_event() == Heartbeat()
    assert server.next_event() is CLOSED
    assert server.next_event() is CLOSED
    assert server.their_state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"more")
