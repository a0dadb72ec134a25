"""Random, half-broken sessionizer messages never raise out of the core (seeded, reproducible)."""

from __future__ import annotations

import random
from typing import Any

import msgpack

from analyzer.core import Analyzer
from tests.analyzer.analyzer_sequences import Seq

VALUES: list[Any] = [None, 0, -1, 2**62, 2**63 + 5, 1.5, True, "", "x", b"\xff\xfe", [], {}, ["a", 1], {"tgid": "x"},
                     "/tmp/a (deleted)", "memfd:x", "127.0.0.1", "::1", "999.1.1.1"]


def mutate(ev: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    ev = dict(ev)
    for _ in range(rng.randint(1, 3)):
        key = rng.choice(list(ev) + ["extra"])
        if rng.random() < 0.2:
            ev.pop(key, None)
        else:
            ev[key] = rng.choice(VALUES)
    return ev


def test_fuzzed_events_and_lifecycle_never_raise(bundled):
    """...and whatever the core publishes still packs onto the wire."""
    rng = random.Random(1234)
    base = Seq(session_id=3)
    base.exec(1, 200, "/bin/sh").write(2, 200, "/tmp/x").connect(3, 200, "1.1.1.1", 80).exec(
        4, 201, "/tmp/x", parent=200).exit(5, 201)
    core = Analyzer(bundled, 0, 1)
    for i in range(3000):
        ev = mutate(rng.choice(base.events), rng)
        outputs = core.handle(("sessionizer.event", ev), i)
        if i % 50 == 0:
            m = mutate({"kind": "session", "state": rng.choice(["opened", "flushed", "closed"]),
                        "session_id": 3, "complete": True}, rng)
            outputs += core.handle(("sessionizer.session", m), i)
        for topic, out in outputs:
            msgpack.packb(out, use_bin_type=True)
        if i % 300 == 0:
            core.handle(("sessionizer.control", mutate({"kind": "control", "command": "reload", "id": 1}, rng)), i)
            core.tick(i)
    assert core.counters.events_in == 3000
    assert core.counters.events_malformed > 0
