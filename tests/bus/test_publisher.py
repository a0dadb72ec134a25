"""bus.Publisher owns its failures: an event that cannot be packed is dropped and counted
(``unpublishable``) while the rest of its batch goes out, a topic's queue never jams, and a
message with nothing left to send does not use a sequence number (no false gap downstream)."""

from __future__ import annotations

import logging

import msgpack

from bus.counters import STAGES, Kind
from bus.envelope import unpack
from bus.publisher import Publisher


class Sock:
    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        self.sent.append(frames)


def test_an_unpackable_event_is_dropped_and_counted_and_the_batch_goes_out(caplog) -> None:
    sock = Sock()
    pub = Publisher(sock, "analyzer", "analyzer-0", batch_max=3)
    with caplog.at_level(logging.ERROR, logger="casa.bus"):
        pub.publish("analyzer.event", {"n": 1})
        pub.publish("analyzer.event", {"n": object()})
        pub.publish("analyzer.event", {"n": 3})          # the batch is full: sent
        pub.publish("analyzer.event", {"n": 4})
        pub.flush()                                       # the queue did not jam
    envs = [unpack(f) for f in sock.sent]
    assert [[e["n"] for e in env.events] for env in envs] == [[1, 3], [4]]
    assert [env.seq for env in envs] == [1, 2]
    assert pub.unpublishable == 1 and pub.sent_events == 3
    assert "dropped an event that cannot be packed | topic=analyzer.event" in caplog.text


def test_a_message_with_nothing_packable_uses_no_seq() -> None:
    sock = Sock()
    pub = Publisher(sock, "analyzer", "analyzer-0")
    assert pub.publish_now("analyzer.decision", [{"score": 2**70}]) is False     # too big for msgpack
    assert pub.publish_now("analyzer.decision", [{"score": 1}]) is True
    assert [unpack(f).seq for f in sock.sent] == [1]
    assert pub.unpublishable == 1


def test_the_count_is_in_every_heartbeat_and_declared_as_loss() -> None:
    sock = Sock()
    pub = Publisher(sock, "sinks", "sinks-jsonl")
    pub.publish_now("sinks.x", [{"bad": {1, 2}}])
    pub.heartbeat({})
    counters = msgpack.unpackb(sock.sent[-1][1])["counters"]
    assert counters["unpublishable"] == 1
    for spec in STAGES.values():
        assert spec.kind("unpublishable") is Kind.LOSS


def test_publish_raw_sends_after_the_queued_events_and_takes_the_next_seq() -> None:
    """A forwarded batch goes out after the events already queued on its topic (its order), as
    one message with the next seq, counted like any other; other topics' queues are untouched."""
    sock = Sock()
    pub = Publisher(sock, "analyzer", "analyzer-0")
    pub.publish("analyzer.event", {"n": 1})
    pub.publish("analyzer.other", {"n": 0})
    raw = msgpack.packb([{"n": 2}, {"n": 3}], use_bin_type=True)
    assert pub.publish_raw("analyzer.event", raw, 2)
    envs = [unpack(f) for f in sock.sent]
    assert [(e.topic, e.seq, [m["n"] for m in e.events]) for e in envs] == [
        ("analyzer.event", 1, [1]), ("analyzer.event", 2, [2, 3])]
    assert sock.sent[1][1].endswith(raw) and envs[1].stream == "analyzer-0"
    assert pub.sent_events == 3 and pub.pending["analyzer.other"] == [{"n": 0}]
