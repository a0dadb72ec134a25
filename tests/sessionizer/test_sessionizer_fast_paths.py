"""The per-event shortcuts of the core must agree with the slow, reference code they spare.

``_plainly_valid`` accepts only events that ``bus.validate_event`` accepts too (it is derived
from the bus tables, so a new field or type in bus/events.py is picked up, and a new kind of
check there would show up here as a disagreement).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bus.events import KIND_FIELDS, validate_event
from sessionizer.core import _plainly_valid
from sessionizer.gates import canonical_ip, is_loopback

from synthetic_events import Events

ev = Events()
VALID: list[dict[str, Any]] = [
    ev.exec(5, 4, "/usr/bin/curl", ["curl", b"\xff"]), ev.exec(5, 4, b"/tmp/\xff", []),
    {**ev.exec(5, 4, "/x"), "cap_eff": None, "seccomp": None, "extra": object()},
    ev.open(5, 4, "/etc/shadow"), ev.connect(5, 4, "::1", 80), ev.exit(5, 4), ev.fork(5, 4, 6),
    ev.root(5, 4, "openclaw-gateway"), {**ev.open(5, 4, "/a"), "comm": b"\xffc"},
]


def _broken() -> list[Any]:
    out: list[Any] = [None, [], "exec", {}, {"kind": "warp"}, {"kind": "loss", "ts_ns": 1},
                      ev.loss(3)]
    for good in VALID:
        for name in list(good):
            if name == "extra":
                continue
            missing = copy.copy(good)
            del missing[name]
            out.append(missing)
            for bad in (True, 1.5, "7", None, 7, b"x", [1]):
                out.append({**good, name: bad})
        if "argv" in good:
            out += [{**good, "argv": ["a", 1]}, {**good, "argv": [None]}, {**good, "argv": "a"}]
    return out


@pytest.mark.parametrize("event", VALID)
def test_valid_events_take_the_fast_path(event):
    assert validate_event(event) == [] and _plainly_valid(event) is True


def test_fast_path_never_accepts_what_validate_event_rejects():
    cases = _broken()
    assert len(cases) > 500
    for event in cases:
        if _plainly_valid(event):
            assert validate_event(event) == [], event


def test_fast_path_covers_every_event_kind_but_loss():
    assert {e["kind"] for e in VALID} == set(KIND_FIELDS) - {"loss"}


def test_address_cache_gives_the_same_answers():
    for addr in ("::ffff:10.0.0.1", " 127.0.0.1 ", "2001:DB8::1", "nope", ""):
        first = canonical_ip(addr)
        assert canonical_ip(addr) == first
    assert canonical_ip(" 127.0.0.1 ") == "127.0.0.1" and is_loopback("127.0.0.1")
    assert not is_loopback("2001:db8::1") and canonical_ip("nope") is None


def test_checkpoint_records_are_what_asdict_gives(gateway_core, ev):
    from dataclasses import asdict
    from synthetic_events import CLI, cli_argv
    for e in [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=10),
              ev.exec(3000, CLI, "/bin/bash", ["bash", "-c", "x"], ts=11), ev.fork(3000, CLI, 3001, ts=12)]:
        gateway_core.handle(e, e["ts_ns"])
    state = gateway_core.checkpoint_state()
    tracker = gateway_core.tracker
    assert state["tracker"] == {"procs": [asdict(p) for p in tracker.procs.values()],
                                "roots": [asdict(r) for r in tracker.roots.values()]}
    assert len(state["tracker"]["procs"]) == 5 and state["sessions"]
    for s, saved in zip(gateway_core.sessions, state["sessions"]):
        assert saved == {**asdict(s), "origin": s.origin.value, "state": s.state.value}
        assert list(saved) == list(asdict(s))
