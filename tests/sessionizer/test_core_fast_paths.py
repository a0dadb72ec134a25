"""The per-event shortcuts of the core must agree with the slow, reference code they spare.

``_plainly_valid`` accepts only events that ``bus.validate_event`` accepts too (it is derived
from the bus tables, so a new field or type in bus/events.py is picked up, and a new kind of
check there would show up here as a disagreement).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bus.events import KIND_FIELDS, OPTIONAL_FIELDS, SIGNAL_KINDS, validate_event
from sessionizer.core import _plainly_valid
from sessionizer.gates import canonical_ip, is_loopback
from sessionizer.noise import LOADER, MISSING, NoiseLists, PathFacts, path_fact

from tests.sessionizer.synthetic_events import S, T0, Events
from tests.bus.bus_samples import SAMPLE_EVENTS

T0_PLUS = T0 + 7 * S      # the wall clock at receipt of the tests' events at ts=7..8

ev = Events()
VALID: list[dict[str, Any]] = [
    ev.exec(5, 4, "/usr/bin/curl", ["curl", b"\xff"]), ev.exec(5, 4, b"/tmp/\xff", []),
    {**ev.exec(5, 4, "/x"), "cap_eff": None, "seccomp": None, "extra": object()},
    ev.open(5, 4, "/etc/shadow"), ev.connect(5, 4, "::1", 80), ev.exit(5, 4), ev.fork(5, 4, 6),
    ev.root(5, 4, "openclaw-gateway"), {**ev.open(5, 4, "/a"), "comm": b"\xffc"},
    # schema 2: the detection kinds, required fields only (the fast path checks those)
    *({f: v for f, v in SAMPLE_EVENTS[k].items() if f not in OPTIONAL_FIELDS.get(k, {})}
      for k in SIGNAL_KINDS),
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
    from tests.sessionizer.synthetic_events import CLI, cli_argv
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


OPEN_PATHS: list[Any] = [
    "/etc/ld.so.cache", "/usr/lib/x86_64-linux-gnu/libc.so.6", "  /HOME/u/.Profile ", "",
    "   ", "/srv/project/src/main.py", b"/tmp/\xff\xfeodd\nname", b"/proc/self/\xff",
    "/usr/lib/locale/C.utf8/LC_CTYPE", "/home/u/.openclaw/state.json", "/etc/shadow",
    "/proc/7/environ", "/proc/meminfo", "/usr//lib/./x86_64-linux-gnu/../libm.so.6", "rel/x",
    "x" * 5000, None, 7,
]
LIBS = ("/lib/", "/usr/lib/", "/lib64/")


def test_path_memo_gives_what_the_filters_give_on_a_miss_and_on_a_hit():
    lists = NoiseLists()
    memo = PathFacts(lists, LIBS)
    for raw in OPEN_PATHS:
        expected = path_fact(raw, lists, LIBS)
        assert memo.fact(raw) == expected, raw            # computed (a miss)
        assert memo.fact(raw) == expected, raw            # remembered (a hit)
    assert len(memo) == len(OPEN_PATHS) - 2               # None and 7 are never remembered
    facts = {memo.fact(raw) for raw in OPEN_PATHS}
    assert facts == {None, "missing_fields", "loader_noise", "unresolved", 7}


def test_path_memo_is_bounded_and_still_right_after_starting_over():
    lists = NoiseLists()
    memo = PathFacts(lists, LIBS, size=3)
    paths = [f"/proc/{i}/status" for i in range(5)] + [f"/srv/{i}" for i in range(5)]
    for raw in paths * 2:
        assert memo.fact(raw) == path_fact(raw, lists, LIBS)
        assert len(memo) <= 3


def _expected_open_drop(event: dict[str, Any], lists: NoiseLists) -> str | None:
    """The reference: what a tool process's open (no role) loses to the loader filter."""
    fact = path_fact(event.get("abspath") or event["path"], lists, LIBS)
    if fact == MISSING:
        return "missing_fields"
    if fact == LOADER or fact == event["tgid"]:
        return None if event["flags"] & 0o3103 else "loader_noise"
    return None


@pytest.mark.parametrize("flags", [0, 0x241])
def test_the_core_answers_opens_as_the_uncached_filter_does(gateway_core, ev, settings, flags):
    from tests.sessionizer.synthetic_events import GATEWAY, WORKER
    for raw in OPEN_PATHS[:-2] * 2 + ["/proc/1001/status"]:
        event = ev.open(WORKER, GATEWAY, raw, ts=7, flags=flags)
        before = dict(gateway_core.dropped)
        out = gateway_core.handle(event, event["ts_ns"])
        expected = _expected_open_drop(event, settings.noise)
        dropped = {k for k, v in gateway_core.dropped.items() if v != before.get(k, 0)}
        if expected is None:
            assert [t for t, _ in out][-1] == "sessionizer.event" and not dropped, raw
            assert out[-1][1]["path"] == raw                   # odd paths pass through intact
        else:
            assert dropped == {expected} and out == [], raw


def test_a_reload_that_changes_the_noise_lists_is_not_answered_from_the_old_memo(gateway_core, ev):
    from sessionizer.settings import settings_from
    from tests.sessionizer.synthetic_events import GATEWAY, WORKER
    old = gateway_core.settings
    path = "/srv/project/notes.txt"
    out = gateway_core.handle(ev.open(WORKER, GATEWAY, path, ts=7), T0_PLUS)
    assert [t for t, _ in out][-1] == "sessionizer.event"     # kept, and now remembered
    assert old.path_facts.fact(path) is None and len(old.path_facts) > 0
    gateway_core.reconfigure(settings_from(old.profiles, section={"noise": {
        "loader_prefixes": ["/srv/"]}}))
    out = gateway_core.handle(ev.open(WORKER, GATEWAY, path, ts=8), T0_PLUS)
    assert out == [] and gateway_core.dropped["loader_noise"] >= 1
    assert gateway_core.settings.path_facts is not old.path_facts


def test_profiles_are_found_by_name_the_first_of_a_name_winning(settings):
    from sessionizer.settings import Settings
    for p in settings.profiles:
        assert settings.profile(p.name) is p
    assert settings.profile("no-such-profile") is None
    first, second = settings.profiles[0], settings.profiles[1]
    import dataclasses
    twin = dataclasses.replace(second, name=first.name)
    assert Settings(profiles=(first, twin)).profile(first.name) is first


def test_expiry_heap_closes_exactly_what_a_scan_of_every_session_would():
    """SessionTable.expire pops due heap entries instead of scanning; the reference is the scan."""
    import random
    from sessionizer.sessions import Origin, SessionTable, _deadline
    rng = random.Random(11)
    table, now, leaders, closed = SessionTable(), T0, [], 0
    for _ in range(4000):
        now += rng.randrange(0, 3 * S // 10)
        op = rng.random()
        if op < 0.12:
            origin = rng.choice([Origin.ACTIVITY, Origin.INVOCATION])
            s = table.open(profile="p", origin=origin, tree_root=rng.randrange(10**6),
                           leader_tgid=rng.randrange(10**6), ts_ns=now,
                           idle_gap_s=rng.choice([0.5, 1.0, 5.0]), close_grace_s=rng.choice([0.0, 2.0]))
            leaders.append(s.leader_tgid)
        elif op < 0.6 and table.sessions:
            SessionTable.record(rng.choice(list(table.sessions.values())), now)
        elif op < 0.7 and leaders:
            table.leader_exit(rng.choice(leaders), now)
        else:
            due = {sid: _deadline(s) for sid, s in table.sessions.items()
                   if _deadline(s) is not None and now > _deadline(s)}
            done = table.expire(now)
            assert [s.session_id for s in done] == sorted(due)
            assert all(s.closed_ns == due[s.session_id] and s.session_id not in table.sessions
                       for s in done)
            left = [d for d in map(_deadline, table.sessions.values()) if d is not None]
            assert all(d >= now for d in left)
            if left:                             # the O(1) shortcut never skips a due session
                assert table.next_due_ns is not None and table.next_due_ns <= min(left)
            closed += len(done)
    assert closed > 100
