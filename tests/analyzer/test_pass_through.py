"""The analyzer stage forwards a batch it passes on unchanged as the bytes it received.

In-process, on the real hooks (analyzer.__main__.AnalyzerHooks), a real Publisher and a real
Subscriber decoding real frames, with the bundled rules: a batch with nothing but owned,
well-formed events goes out as its own bytes; a batch with a decision or a malformed event in it
goes out map by map, the decision right after its event. Either way subscribers decode the same
events in the same order (tests/analyzer/test_main.py checks that over the real bus).
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

from analyzer.__main__ import AnalyzerHooks, passes_through
from analyzer.core import Analyzer
from bus import Envelope, Publisher, Subscriber, pack, unpack
from bus.envelope import pack_raw
from policy import load_policy
from tests.analyzer.analyzer_process import CHECKOUT
from tests.analyzer.analyzer_sequences import lifecycle

SID = 41
TOPICS = ["sessionizer.event", "sessionizer.session", "sessionizer.control"]


class Sock:
    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        self.sent.append(frames)


class Stage:
    """The analyzer's hooks between a sender's frames and the frames they publish."""

    def __init__(self, instances: int = 1) -> None:
        self.out = Sock()
        self.sub = Subscriber(None, TOPICS, keep_raw=True)
        self.hooks = AnalyzerHooks(Analyzer(load_policy(CHECKOUT / "rules.json"), 0, instances),
                                   Publisher(self.out, "analyzer", "analyzer-0"), self.sub, None)
        self.seq = 0

    def send(self, topic: str, events: list[dict[str, Any]], raw: bytes | None = None) -> list[list[bytes]]:
        """Hand one message to the stage; return the frames it published for it."""
        self.seq += 1
        env = Envelope(topic, "sessionizer", 1, self.seq, 1, events)
        env = self.sub.handle_frames(pack_raw(env, raw) if raw is not None else pack(env))
        before = len(self.out.sent)
        self.hooks.handle(env)
        self.hooks.pub.flush()
        return self.out.sent[before:]


def golden(case: str) -> list[dict[str, Any]]:
    events = json.loads((CHECKOUT / "tests/fixtures/golden" / f"{case}.json").read_text())["events"]
    return [{**e, "session_id": SID} for e in events]


def decoded(frames: list[list[bytes]]) -> list[tuple[str, dict[str, Any]]]:
    return [(f[0].decode(), m) for f in frames for m in unpack(f).events]


def test_a_batch_passed_on_unchanged_is_forwarded_as_received() -> None:
    """Bytes no re-packing would give (a float32, an unknown field) arrive downstream as sent."""
    st = Stage()
    st.send("sessionizer.session", [lifecycle(SID, "opened")])
    batch = [{**e, "x_future": 0.5} for e in golden("B02")]
    raw = msgpack.packb(batch, use_bin_type=True, use_single_float=True)
    (frames,) = st.send("sessionizer.event", batch, raw)
    assert frames[0] == b"analyzer.event" and frames[1].endswith(raw)
    assert msgpack.packb(batch, use_bin_type=True) != raw          # re-packing would differ
    assert unpack(frames).events == batch


def test_a_batch_with_a_decision_goes_out_map_by_map_with_the_decision_after_its_event() -> None:
    st = Stage()
    st.send("sessionizer.session", [lifecycle(SID, "opened")])
    events = golden("M05")
    got = decoded(st.send("sessionizer.event", events))
    assert [m for t, m in got if t == "analyzer.event"] == events
    (i,) = [i for i, (t, _) in enumerate(got) if t == "analyzer.decision"]
    assert got[i][1]["action"] == "ALERT" and got[i - 1][1] == got[i][1]["event"]


def test_a_malformed_event_is_dropped_and_the_rest_forwarded() -> None:
    st = Stage()
    events = golden("B02")
    bad = {**events[1], "tgid": "nope"}
    got = decoded(st.send("sessionizer.event", [events[0], bad, *events[2:]]))
    assert got == [("analyzer.event", e) for e in (events[0], *events[2:])]
    assert st.hooks.core.counters.events_malformed == 1


def test_with_two_instances_only_the_owned_events_go_out() -> None:
    st = Stage(instances=2)
    mine, theirs = golden("B02")[:3], [{**e, "session_id": SID + 1} for e in golden("B02")[:3]]
    owned = mine if st.hooks.core.owns(SID) else theirs
    got = decoded(st.send("sessionizer.event", [*mine, *theirs]))
    assert got == [("analyzer.event", e) for e in owned]


def test_a_control_map_is_never_forwarded_as_events() -> None:
    """The analyzer forwards a control map on its own topic after its reload: the same map object
    as received, which must not pass for an unchanged event batch."""
    st = Stage()
    control = {"kind": "control", "op": "reload", "reload_id": 7, "ts_ns": 1}
    for frames in st.send("sessionizer.control", [control]):
        assert frames[0] != b"analyzer.event"


def test_passes_through_needs_every_event_in_order_and_nothing_else() -> None:
    a, b = {"n": 1}, {"n": 2}
    assert passes_through([("analyzer.event", a), ("analyzer.event", b)], [a, b])
    assert not passes_through([("analyzer.event", b), ("analyzer.event", a)], [a, b])
    assert not passes_through([("analyzer.event", a)], [a, b])
    assert not passes_through([("analyzer.event", a), ("analyzer.decision", b)], [a, b])
    assert not passes_through([("analyzer.event", a), ("analyzer.event", dict(b))], [a, b])
