"""Event schema 2 on the bus (docs/bus.md §5.9, §13): the envelope's ``schema`` key, the optional
path and identity fields, unknown kinds counted as ``unknown_kind`` -- and proof that a subscriber
built before schema 2 survives schema-2 traffic.

``tests/bus/schema1/`` holds ``bus/events.py`` and ``bus/envelope.py`` exactly as they were on
main at 3a8146d, the last schema-1 build, unmodified: the validator and decoder that stages
deployed before this change run. They must decode every schema-2 message, accept every event of
a kind they know (new fields are unknown extra fields to them) and report every new kind as a
problem, which their stages count as malformed and drop -- never an exception.

The old sources are kept as data (``*.py.txt``), not as modules: they are a recording of what was
deployed, not code anyone maintains, and are compiled and run here as they were. They are not read
from git history at test time because a checkout need not carry it (a shallow clone, a source
tarball); where it does, a test checks the recording against the commit byte for byte.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import msgpack
import pytest

from bus import Envelope, MalformedMessage, Publisher, Subscriber, pack, unpack, validate_event
from bus.events import SCHEMA, known_kinds
from tests.bus.bus_samples import DECISION_MAP, SAMPLE_EVENTS, SESSION_MAP

SCHEMA1_COMMIT = "3a8146d770b46e7e53a15cd0a1d957035adb7771"    # main's last schema-1 build
SCHEMA1_DIR = Path(__file__).resolve().parent / "schema1"
CHECKOUT = Path(__file__).resolve().parents[2]


def load_schema1(name: str) -> ModuleType:
    """Compile and run ``schema1/<name>.py.txt`` unchanged as the module ``bus_schema1_<name>``
    (registered, so its dataclasses resolve their module as they did when it was ``bus.<name>``)."""
    path = SCHEMA1_DIR / f"{name}.py.txt"
    module = ModuleType(f"bus_schema1_{name}")
    module.__file__ = str(path)
    sys.modules[module.__name__] = module
    exec(compile(path.read_bytes(), str(path), "exec"), module.__dict__)
    return module


v1_envelope = load_schema1("envelope")
v1_events = load_schema1("events")

# Events as a schema-2 collector publishes them: new optional fields on known kinds...
SCHEMA2_KNOWN = [
    {**SAMPLE_EVENTS["exec"], "path": "./p.sh", "abspath": "/tmp/x/d/p.sh", "ino": 1234567,
     "dev": 2049},
    {**SAMPLE_EVENTS["open"], "path": ".x86", "abspath": b"/tmp/\xff/.x86", "ino": 99, "dev": 64768},
    {**SAMPLE_EVENTS["open"], "path": "deep/p", "abspath": "", "dirfd": -100},
    {**SAMPLE_EVENTS["open"], "path": "/tmp/" + "a" * 4089, "path_truncated": True},
]
# ... the exec's new fields (fds 0-2, the loader's environment, credentials) ...
SCHEMA2_KNOWN.append({**SAMPLE_EVENTS["exec"], "euid": 0, "prev_euid": 1000, "prev_cap_eff": 0,
                      "stdio": [{"type": "inet", "ino": 5, "family": 2, "addr": "127.0.0.1", "port": 4444},
                                {"type": "pipe", "ino": 9}, {"type": "tty"}],
                      "parent_stdio": ["inet", "inet", "inet"], "ld_env": {"LD_PRELOAD": b"/tmp/\xff.so"},
                      "env_truncated": True})
# ... and kinds of the detection round (docs/bus.md §5.10-§5.22) a schema-1 build has never heard of.
SCHEMA2_NEW = [SAMPLE_EVENTS[k] for k in ("chmod", "rename", "memfd", "setid", "send")]
# Kinds no build knows: what a newer publisher may send one day.
_C = {k: SAMPLE_EVENTS["open"][k] for k in ("ts_ns", "tgid", "tid", "ppid", "uid", "comm", "root")}
FUTURE = [{**_C, "kind": "teleport", "syscall": "teleport", "ret": 0},
          {**_C, "kind": "mount", "syscall": "mount", "path": "/mnt", "ret": 0}]


class Capture:
    """A socket stand-in that keeps what a Publisher sends."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        self.sent.append(frames)


def schema2_traffic(new: list[dict[str, Any]] = SCHEMA2_NEW) -> list[list[bytes]]:
    """What a schema-2 collector sends: a mixed batch, a batch of only new kinds, a heartbeat."""
    sock = Capture()
    pub = Publisher(sock, "collector", clock=lambda: 10**18)
    for ev in SCHEMA2_KNOWN + new[:2]:
        pub.publish("collector.event", ev)
    pub.flush()
    pub.publish_now("collector.event", new[2:])
    pub.heartbeat({"events_exec": 1})
    return sock.sent


def test_every_message_carries_schema_2() -> None:
    sent = schema2_traffic()
    assert SCHEMA == 2
    bodies = [msgpack.unpackb(frames[1], raw=False) for frames in sent]
    assert [b["schema"] for b in bodies] == [2, 2, 2]
    assert [unpack(frames).schema for frames in sent] == [2, 2, 2]


def test_a_message_without_schema_is_schema_1_and_a_bad_one_is_malformed() -> None:
    body = {"v": 1, "stream": "collector", "epoch": 1, "seq": 1, "sent_ns": 1, "events": []}
    assert unpack([b"collector.event", msgpack.packb(body)]).schema == 1
    with pytest.raises(MalformedMessage, match="schema"):
        unpack([b"collector.event", msgpack.packb({**body, "schema": "2"})])


@pytest.mark.parametrize("event", SCHEMA2_KNOWN)
def test_optional_fields_are_valid_when_well_typed(event: dict[str, Any]) -> None:
    assert validate_event(event) == []


@pytest.mark.parametrize("field,value", [("abspath", 5), ("path_truncated", 1), ("ino", True),
                                         ("dev", "8:1"), ("ino", None)])
def test_optional_fields_are_type_checked_when_present(field: str, value: Any) -> None:
    for kind in ("exec", "open"):
        event = {**SAMPLE_EVENTS[kind], field: value}
        assert validate_event(event) == [f"{kind}: field {field!r} is {type(value).__name__}"]


def test_subscriber_drops_unknown_kinds_as_unknown_kind_not_malformed() -> None:
    sub = Subscriber(sock=None, topics=["collector.event"])
    envs = [sub.handle_frames(frames) for frames in schema2_traffic(SCHEMA2_NEW[:2] + FUTURE)]
    assert all(env is not None for env in envs)
    mixed, only_new, heartbeat = envs
    assert mixed.events == SCHEMA2_KNOWN + SCHEMA2_NEW[:2]
    assert only_new.events == []
    assert heartbeat.counters["events_exec"] == 1
    assert sub.counters.unknown_kind == len(FUTURE)
    assert sub.counters.malformed == 0 and sub.counters.lost_messages == 0
    assert sub.counters.as_dict()["unknown_kind"] == len(FUTURE)


def test_the_detection_kinds_are_known_and_valid() -> None:
    sub = Subscriber(sock=None, topics=["collector.event"])
    envs = [sub.handle_frames(frames) for frames in schema2_traffic()]
    assert [e for env in envs[:2] for e in env.events] == SCHEMA2_KNOWN + SCHEMA2_NEW
    assert sub.counters.unknown_kind == 0
    assert all(validate_event(ev) == [] for ev in SCHEMA2_KNOWN + SCHEMA2_NEW)


def test_damage_is_left_to_the_stage() -> None:
    sub = Subscriber(sock=None, topics=["collector.event"])
    damaged = [{"kind": 5}, {"no": "kind"}, SAMPLE_EVENTS["exit"]]
    env = sub.handle_frames(pack(Envelope("collector.event", "collector", 1, 1, 1, damaged)))
    assert env.events == damaged and sub.counters.unknown_kind == 0
    assert validate_event({"kind": 5}) == ["unknown kind 5"]          # the stage's own verdict


@pytest.mark.parametrize("topic,good,bad", [
    ("analyzer.decision", DECISION_MAP, SESSION_MAP),
    ("sessionizer.session", SESSION_MAP, DECISION_MAP),
    ("analyzer.event", SAMPLE_EVENTS["open"], {**SAMPLE_EVENTS["open"], "kind": "teleport"}),
])
def test_each_topic_knows_its_own_kinds(topic: str, good: dict, bad: dict) -> None:
    sub = Subscriber(sock=None, topics=[topic])
    env = sub.handle_frames(pack(Envelope(topic, "analyzer-0", 1, 1, 1, [bad, good])))
    assert env.events == [good] and sub.counters.unknown_kind == 1
    assert known_kinds("collector.heartbeat") is None


def test_a_schema1_subscriber_survives_schema2_traffic() -> None:
    """The unmodified schema-1 decoder and validator: known kinds pass, new kinds are reported as
    problems (the stage counts them malformed and drops them), nothing raises."""
    accepted, malformed = [], 0
    for frames in schema2_traffic():
        env = v1_envelope.unpack(frames)
        assert env.extra == {"schema": 2}
        for ev in env.events:
            problems = v1_events.validate_event(ev)
            if problems:
                assert problems == [f"unknown kind {ev['kind']!r}"]
                malformed += 1
            else:
                accepted.append(ev)
    assert accepted == SCHEMA2_KNOWN and malformed == len(SCHEMA2_NEW)


def test_a_schema1_pass_through_forwards_schema2_batches_intact() -> None:
    """A schema-1 analyzer forwards a batch by its raw bytes: the slice it finds in a schema-2
    body is exactly the events, and its own envelope around them decodes with the new build."""
    frames = schema2_traffic()[0]
    raw = v1_envelope.raw_events(frames[1])
    events = SCHEMA2_KNOWN + SCHEMA2_NEW[:2]
    assert raw == msgpack.packb(events, use_bin_type=True)
    out = v1_envelope.pack_raw(v1_envelope.Envelope("analyzer.event", "analyzer-0", 1, 1, 1), raw)
    env = unpack(out)
    assert env.schema == 1 and env.events == events


@pytest.mark.parametrize("name", ["events", "envelope"])
def test_the_schema1_recording_is_the_deployed_source_unmodified(name: str) -> None:
    """The recording is what main's schema-1 build shipped, byte for byte (needs the history)."""
    if shutil.which("git") is None or not (CHECKOUT / ".git").exists():
        pytest.skip("not a git checkout: the recording cannot be compared with its commit")
    shown = subprocess.run(["git", "-C", str(CHECKOUT), "show", f"{SCHEMA1_COMMIT}:bus/{name}.py"],
                           capture_output=True)
    if shown.returncode != 0:
        pytest.skip(f"commit {SCHEMA1_COMMIT[:7]} is not in this checkout (a shallow clone?)")
    assert (SCHEMA1_DIR / f"{name}.py.txt").read_bytes() == shown.stdout


def test_an_unhashable_kind_is_damage_left_to_the_stage_not_a_crash() -> None:
    sub = Subscriber(sock=None, topics=["collector.event"])
    damaged = [{"kind": ["exec"]}, {"kind": {"a": 1}}, SAMPLE_EVENTS["exit"], {"kind": "teleport"}]
    env = sub.handle_frames(pack(Envelope("collector.event", "collector", 1, 1, 1, damaged)))
    assert env is not None and env.events == damaged[:3] and sub.counters.unknown_kind == 1
    assert sub.counters.malformed == 0


def test_a_batch_with_unknown_kinds_dropped_keeps_no_raw_bytes() -> None:
    """The packed bytes of a batch are only kept while they are the batch: once the subscriber
    drops an event of an unknown kind, forwarding them would resend it."""
    sub = Subscriber(sock=None, topics=["analyzer.event"], keep_raw=True)
    future = {**SAMPLE_EVENTS["open"], "kind": "teleport"}
    mixed = sub.handle_frames(pack(Envelope("analyzer.event", "analyzer-0", 1, 1, 1,
                                            [future, SAMPLE_EVENTS["open"]])))
    assert mixed.events == [SAMPLE_EVENTS["open"]] and mixed.raw_events is None
    whole = sub.handle_frames(pack(Envelope("analyzer.event", "analyzer-0", 1, 2, 1, [SAMPLE_EVENTS["open"]])))
    assert msgpack.unpackb(whole.raw_events) == [SAMPLE_EVENTS["open"]]
