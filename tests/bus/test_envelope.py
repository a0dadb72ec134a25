"""Envelope and event contract: msgpack round trips, validation, exports, version and malformed input."""

from __future__ import annotations

import copy

import msgpack
import pytest

import bus
from bus import Envelope, MalformedMessage, Subscriber, UnknownVersion, pack, unpack, validate_event
from bus.events import COMMON_FIELDS, KIND_FIELDS, KINDS
from tests.bus.bus_samples import CONTROL_MAP, DECISION_MAP, SAMPLE_EVENTS, SESSION_MAP


def _env(events: list[dict], **kw) -> Envelope:
    base = dict(topic="collector.event", stream="collector", epoch=11, seq=3, sent_ns=12345)
    base.update(kw)
    return Envelope(events=events, **base)


def test_all_exports_resolve() -> None:
    for name in bus.__all__:
        assert hasattr(bus, name), name
    assert set(bus.__all__) >= {"Envelope", "pack", "unpack", "Publisher", "Subscriber",
                                "validate_event", "bind_publisher", "connect_subscriber"}


def test_sample_covers_every_kind() -> None:
    assert set(SAMPLE_EVENTS) == set(KINDS) == set(KIND_FIELDS)


@pytest.mark.parametrize("kind", KINDS)
def test_event_round_trip(kind: str) -> None:
    event = SAMPLE_EVENTS[kind]
    got = unpack(pack(_env([event])))
    assert got.events == [event]
    assert validate_event(got.events[0]) == []


@pytest.mark.parametrize("payload", [SESSION_MAP, DECISION_MAP, CONTROL_MAP], ids=["session", "decision", "control"])
def test_stage_map_round_trip(payload: dict) -> None:
    got = unpack(pack(_env([payload], topic="analyzer.decision", stream="analyzer-0")))
    assert got.events == [payload]
    assert (got.topic, got.stream, got.epoch, got.seq, got.sent_ns) == ("analyzer.decision", "analyzer-0", 11, 3, 12345)


def test_heartbeat_round_trip() -> None:
    env = _env([], topic="collector.heartbeat", last_seq={"collector.event": 9},
               counters={"sent_events": 5, "rules_version": "abc"}, interval_s=1.0)
    got = unpack(pack(env))
    assert got.last_seq == {"collector.event": 9}
    assert got.counters == {"sent_events": 5, "rules_version": "abc"}
    assert got.interval_s == 1.0 and got.events == []


def test_unknown_keys_kept_in_extra() -> None:
    frames = pack(_env([]))
    body = msgpack.unpackb(frames[1])
    body["future"] = 1
    got = unpack([frames[0], msgpack.packb(body)])
    assert got.extra == {"future": 1}


def test_non_utf8_text_round_trip() -> None:
    raw_path = b"/tmp/\xff\xfe odd\nname"
    inside = bus.from_kernel(raw_path + b"\0garbage")
    event = {**SAMPLE_EVENTS["open"], "path": bus.to_wire(inside),
             "comm": bus.to_wire(bus.from_kernel(b"b\xe9sh\0"))}
    frames = pack(_env([event]))
    wire = msgpack.unpackb(frames[1], raw=False)["events"][0]
    assert isinstance(wire["path"], bytes)            # msgpack bin, not a lossy str
    got = unpack(frames).events[0]
    assert bus.to_bytes(bus.from_wire(got["path"])) == raw_path
    assert bus.to_bytes(bus.from_wire(got["comm"])) == b"b\xe9sh"
    assert validate_event(got) == []
    assert bus.to_wire("plain") == "plain"


@pytest.mark.parametrize("kind", KINDS)
def test_validate_rejects_missing_field(kind: str) -> None:
    for name in KIND_FIELDS[kind]:
        bad = copy.deepcopy(SAMPLE_EVENTS[kind])
        del bad[name]
        assert validate_event(bad) == [f"{kind}: missing field {name!r}"]


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "loss"])
def test_validate_rejects_missing_common_field(kind: str) -> None:
    for name in COMMON_FIELDS:
        if name == "kind":
            continue
        bad = {k: v for k, v in SAMPLE_EVENTS[kind].items() if k != name}
        assert validate_event(bad) == [f"{kind}: missing field {name!r}"]


@pytest.mark.parametrize("kind", KINDS)
def test_validate_rejects_wrong_type(kind: str) -> None:
    bad = {**SAMPLE_EVENTS[kind], "ts_ns": "yesterday"}
    assert validate_event(bad) == [f"{kind}: field 'ts_ns' is str"]


def test_validate_rejects_bool_for_int_and_bad_argv() -> None:
    assert validate_event({**SAMPLE_EVENTS["exit"], "tgid": True}) == ["exit: field 'tgid' is bool"]
    assert validate_event({**SAMPLE_EVENTS["exec"], "argv": ["a", 3]}) == ["exec: argv items must be text"]
    assert validate_event({**SAMPLE_EVENTS["exec"], "cap_eff": None}) == []


def test_validate_rejects_unknown_kind_and_non_map() -> None:
    assert validate_event({"kind": "teleport"}) == ["unknown kind 'teleport'"]
    assert validate_event([1, 2]) == ["event is list, not a map"]


def test_unknown_version_rejected() -> None:
    frames = pack(_env([]))
    body = msgpack.unpackb(frames[1])
    body["v"] = 2
    with pytest.raises(UnknownVersion, match="envelope version 2"):
        unpack([frames[0], msgpack.packb(body)])


def _body(**over) -> bytes:
    body = {"v": 1, "stream": "collector", "epoch": 1, "seq": 1, "sent_ns": 1, "events": []}
    body.update(over)
    return msgpack.packb(body)


MALFORMED = {
    "garbage bytes": [b"collector.event", b"\xc1\xc1\xc1"],
    "one frame": [b"collector.event"],
    "three frames": [b"collector.event", _body(), b"x"],
    "non-map body": [b"collector.event", msgpack.packb([1, 2, 3])],
    "topic not utf-8": [b"\xff", _body()],
    "seq is a string": [b"collector.event", _body(seq="1")],
    "stream is an int": [b"collector.event", _body(stream=5)],
    "events not a list": [b"collector.event", _body(events={"kind": "exec"})],
    "event not a map": [b"collector.event", _body(events=[1])],
    "last_seq values": [b"collector.heartbeat", _body(last_seq={"collector.event": "9"})],
    "trailing bytes": [b"collector.event", _body() + b"\x00"],
}


@pytest.mark.parametrize("frames", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_raises(frames: list[bytes]) -> None:
    with pytest.raises(MalformedMessage):
        unpack(frames)


def test_subscriber_counts_and_drops_malformed() -> None:
    sub = Subscriber(sock=None, topics=["collector."])
    for frames in MALFORMED.values():
        assert sub.handle_frames(frames) is None
    bad_version = [b"collector.event", _body(v=99)]
    assert sub.handle_frames(bad_version) is None
    assert sub.counters.malformed == len(MALFORMED)
    assert sub.counters.unknown_version == 1
    assert sub.counters.received_messages == 0
    good = sub.handle_frames(pack(_env([SAMPLE_EVENTS["exit"]], sent_ns=0)))
    assert good is not None and sub.counters.received_events == 1


def test_pack_raw_of_prepacked_events_is_byte_identical_to_packing_the_maps() -> None:
    """The benchmarks' replayer packs its batches ahead of time (pack_events) and wraps them with
    pack_raw: exactly what pack gives for the maps, odd paths included."""
    odd = dict(SAMPLE_EVENTS["open"], path=b"/tmp/bad\xff\nline" + b"z" * 5000)
    events = [SAMPLE_EVENTS[k] for k in KINDS] + [odd]
    out = _env([], topic="analyzer.event", stream="analyzer-0", seq=8)
    assert bus.envelope.pack_raw(out, bus.envelope.pack_events(events)) == pack(
        _env(events, topic="analyzer.event", stream="analyzer-0", seq=8))


def test_keep_raw_gives_the_events_exactly_as_received() -> None:
    """A stage that forwards a batch unchanged sends ``raw_events`` instead of packing the maps
    again: they are the sender's bytes (a float32 or a wide int encoding stays as it was), and
    wrapped by pack_raw they decode to the same events."""
    odd = dict(SAMPLE_EVENTS["open"], path=b"/tmp/bad\xff\nline", mode=1.5)
    events = [SAMPLE_EVENTS["exec"], odd]
    packed = msgpack.packb(events, use_bin_type=True, use_single_float=True)
    frames = bus.envelope.pack_raw(_env([]), packed)
    env = unpack(frames, keep_raw=True)
    assert env.raw_events == packed and env.events == events
    assert unpack(frames).raw_events is None                      # only when asked
    again = unpack(bus.envelope.pack_raw(_env([], topic="analyzer.event"), env.raw_events))
    assert again.events == events and again.topic == "analyzer.event"


def test_keep_raw_finds_events_wherever_the_sender_put_them() -> None:
    """pack() writes ``events`` last; another sender may not: the bytes are sliced by position,
    not assumed to run to the end of the body."""
    events = [SAMPLE_EVENTS["exit"], SAMPLE_EVENTS["fork"]]
    body = {"events": events, "v": 1, "stream": "collector", "epoch": 1, "seq": 2, "sent_ns": 3,
            "future": ["x"] * 3}
    frames = [b"collector.event", msgpack.packb(body, use_bin_type=True)]
    env = unpack(frames, keep_raw=True)
    assert env.raw_events == msgpack.packb(events, use_bin_type=True)
    assert env.extra == {"future": ["x"] * 3}


def test_keep_raw_on_a_heartbeat_or_an_empty_batch_keeps_nothing() -> None:
    hb = _env([], topic="collector.heartbeat", last_seq={"collector.event": 3}, counters={"x": 1},
              interval_s=1.0)
    assert unpack(pack(hb), keep_raw=True).raw_events is None
    assert unpack(pack(_env([])), keep_raw=True).raw_events is None


@pytest.mark.parametrize("frames", MALFORMED.values(), ids=MALFORMED.keys())
def test_keep_raw_rejects_what_unpack_rejects(frames: list[bytes]) -> None:
    with pytest.raises(MalformedMessage):
        unpack(frames, keep_raw=True)


def test_the_encoder_writes_what_msgpack_writes() -> None:
    """The bus encodes with ormsgpack; any msgpack reader (a tap, an old recording's tools) must
    read it, and a recording packed by msgpack must decode the same: the bytes are identical."""
    odd = dict(SAMPLE_EVENTS["open"], path=b"/tmp/bad\xff\nline" + b"z" * 70_000)
    values = [SAMPLE_EVENTS[k] for k in KINDS] + [odd, DECISION_MAP, SESSION_MAP, CONTROL_MAP,
                                                   {"ints": [0, -1, 127, 128, -33, 2**32, -2**63, 2**64 - 1]},
                                                   {"f": 0.1, "t": True, "n": None, "long": "é" * 300}]
    for value in values:
        assert bus.envelope.encode(value) == msgpack.packb(value, use_bin_type=True)
        assert unpack(bus.envelope.pack_raw(_env([]), msgpack.packb([value], use_bin_type=True))).events == [value]


@pytest.mark.parametrize("body", [msgpack.packb(msgpack.ExtType(5, b"ab")),
                                  msgpack.packb({"v": 1, "events": [{"t": msgpack.ExtType(1, b"")}]}),
                                  b"\x91" * 5000 + b"\x01"])
def test_extension_types_and_absurd_nesting_are_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        unpack([b"collector.event", body])
