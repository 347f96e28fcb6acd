"""The feed's messages and its socket pair (projections.feed): large commits split in order,
a full socket drops instead of blocking, a closed or garbled feed is told apart."""

from __future__ import annotations

import socket
from uuid import uuid4

from projections.feed import MESSAGE_BYTES, FeedReceiver, FeedSender, follows, messages

OID = uuid4()


def rows(first: int, n: int, size: int = 100) -> list[tuple[int, object, int, str, bytes]]:
    return [(first + i, OID, first + i, "t:Event", bytes([i % 251]) * size) for i in range(n)]


def test_a_large_commit_is_split_in_order_and_arrives_whole() -> None:
    batch = rows(1, 3000)
    assert len(messages(batch, True)) > 3000 * 100 // MESSAGE_BYTES - 1
    sender = FeedSender()
    receiver = FeedReceiver(sender.connect())
    sender.send(batch)
    contiguous, got = receiver.drain()
    assert contiguous and sender.lost == 0
    assert [r[0] for r in got] == list(range(1, 3001))
    assert got[7] == (8, OID.bytes, 8, "t:Event", bytes([7]) * 100)
    assert follows(got, 0) and not follows(got, 1) and not follows(got[:5] + got[6:], 0)


def test_a_follower_that_does_not_read_loses_messages_and_the_writer_never_waits() -> None:
    sender = FeedSender()
    receiver = FeedReceiver(sender.connect())
    for at in range(1, 400_001, 1000):  # about 40 MB offered, far past the buffers
        sender.send(rows(at, 1000))
    assert sender.lost > 0 and sender.sent > 0
    contiguous, got = receiver.drain()
    assert contiguous and follows(got, 0) and got[-1][0] < 400_000  # a prefix arrived
    sender.send(rows(400_001, 10))  # room again: what comes after the loss has a gap
    _, later = receiver.drain()
    assert [r[0] for r in later] == list(range(400_001, 400_011))
    assert not follows(later, got[-1][0])


def test_a_closed_feed_is_silent_and_a_garbled_message_is_not_trusted() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    receiver = FeedReceiver(theirs.detach())
    ours.send(b"\xc1 not msgpack")
    ours.send(messages(rows(1, 2), True)[0])
    contiguous, got = receiver.drain()
    assert not contiguous and [r[0] for r in got] == [1, 2]
    ours.close()
    assert receiver.wait(1.0)  # the end of the feed is readable
    assert receiver.drain() == (True, []) and receiver.closed
    assert not receiver.wait(0.01)
    receiver.close()


def test_a_sender_without_a_follower_counts_nothing_sent() -> None:
    sender = FeedSender()
    sender.send(rows(1, 5))
    assert (sender.sent, sender.lost) == (0, 0)
    receiver = FeedReceiver(sender.connect())
    receiver.close()
    sender.send(rows(1, 5))
    assert sender.lost == 1
