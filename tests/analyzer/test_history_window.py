"""The incremental history flags equal the from-scratch definition after every event.

``history_flags()`` (a rescan of the window) is the reference; ``HistoryWindow`` must give the
identical HistoryFlags for every prefix of many random sequences: small windows so events leave
them often, thresholds 0..4, windows of 0 (unlimited) to a few seconds, timestamps that go
backwards (arrival order is not time order across processes), repeated and odd paths (non-UTF-8,
newlines, very long, " (deleted)", empty), loopback and private connects, and reloads mid-way.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from analyzer.core import Analyzer
from analyzer.history_flags import Classifier, classify, history_flags
from analyzer.history_window import HistoryWindow
from analyzer.session_state import SessionState
from tests.analyzer.analyzer_sequences import Seq, context_after
from policy import Analysis, Policy

S = 1_000_000_000
PATHS = ["/root/.netrc", "/etc/shadow", "/tmp/x.sh", "/tmp/y", "/home/u/.ssh/id_rsa", "/dev/null",
         "/usr/lib/libc.so.6", "/tmp/bad\udcff\udcfe", "/tmp/new\nline", "/tmp/" + "z" * 5000,
         "/tmp/gone (deleted)", "", "relative/path", "/proc/self/status", "/bin/sh"]
ADDRS = ["93.184.216.34", "127.0.0.1", "10.1.2.3", "::1", "2001:db8::1", "not-an-ip", ""]
O_WRONLY, O_CREAT = 1, 0x40


def random_analysis(rng: random.Random, base: Analysis) -> Analysis:
    return dataclasses.replace(
        base, recent_event_limit=rng.choice([1, 2, 3, 5, 8, 64]),
        burst_open_threshold=rng.randint(0, 4), burst_connect_threshold=rng.randint(0, 4),
        burst_exec_threshold=rng.randint(0, 4), burst_window_seconds=rng.choice([0, 1, 2, 5]),
        sensitive_history_window_seconds=rng.choice([0, 1, 3]),
        max_per_process_artifacts=rng.choice([1, 2, 50]))


def random_event(rng: random.Random, ts: int) -> dict[str, Any]:
    kind = rng.choice(["exec", "open", "open", "open", "connect", "exit"])
    ev: dict[str, Any] = {"kind": kind, "ts_ns": ts, "tgid": rng.randint(100, 103), "ppid": 1,
                          "session_id": 1}
    if kind == "exec":
        ev["path"] = rng.choice(PATHS)
    elif kind == "open":
        ev["path"] = rng.choice(PATHS)
        ev["flags"] = rng.choice([0, 0, O_WRONLY, O_CREAT | O_WRONLY, 2])
    elif kind == "connect":
        ev["addr"], ev["port"] = rng.choice(ADDRS), rng.choice([53, 443])
    return ev


def run_sequence(seed: int, base: Analysis) -> int:
    """Feed one random sequence, compare after every event; return how many flags were true."""
    rng = random.Random(seed)
    a = random_analysis(rng, base)
    state = SessionState(session_id=1, recent_limit=a.recent_event_limit,
                         artifact_limit=a.max_per_process_artifacts)
    window = HistoryWindow(a, state.recent_limit)
    ts, true_flags = 10 * S, 0
    for step in range(rng.randint(1, 120)):
        ts = max(0, ts + rng.choice([0, 1, S // 2, S, S + 1, 3 * S, -S, -2 * S]))
        state.observe(random_event(rng, ts), lambda e: classify(e, a))
        window.push(state.recent[-1])
        if rng.random() < 0.03:        # a reload: new values, window re-classified and replayed
            a = dataclasses.replace(random_analysis(rng, base), recent_event_limit=a.recent_event_limit)
            state.reclassify(lambda e: classify(e, a))
            window = HistoryWindow.replay(state.recent, a, state.recent_limit)
        expected = history_flags(state, a)
        got = window.flags(state.deleted_opens)
        assert got == expected, f"seed={seed} step={step} window={list(state.recent)}"
        true_flags += sum(expected.as_map().values())
    return true_flags


def test_incremental_flags_equal_the_rescan_at_every_step(bundled: Policy):
    true_flags = sum(run_sequence(seed, bundled.analysis) for seed in range(3000))
    assert true_flags > 10_000       # the sequences do exercise the flags, not only all-False


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_flags_turn_false_when_the_pair_leaves_the_window(bundled: Policy, limit: int):
    a = dataclasses.replace(bundled.analysis, recent_event_limit=limit)
    state = SessionState(session_id=1, recent_limit=limit, artifact_limit=10)
    window = HistoryWindow(a, limit)
    events = [{"kind": "connect", "ts_ns": S, "tgid": 1, "addr": "93.184.216.34", "port": 443},
              {"kind": "exec", "ts_ns": S, "tgid": 1, "path": "/bin/echo"}]
    events += [{"kind": "exit", "ts_ns": S, "tgid": 1}] * 3
    seen = []
    for ev in events:
        state.observe(ev, lambda e: classify(e, a))
        window.push(state.recent[-1])
        seen.append(window.flags(state.deleted_opens).connect_then_exec)
        assert seen[-1] == history_flags(state, a).connect_then_exec
    assert seen[1] is (limit >= 2)
    assert not seen[-1]


def test_unchanged_flags_are_the_same_object(bundled: Policy):
    a = bundled.analysis
    window = HistoryWindow(a, 64)
    state = SessionState(session_id=1, recent_limit=64, artifact_limit=10)
    for ts in range(3):
        state.observe({"kind": "exit", "ts_ns": ts, "tgid": 1}, lambda e: classify(e, a))
    first = window.flags(0)
    assert window.flags(0) is first


def test_core_flags_match_the_rescan_across_a_reload(original: Policy):
    """Through Analyzer (history_mode "original"): the window state is rebuilt after a reload
    that changes the window."""
    narrow = dataclasses.replace(original, analysis=dataclasses.replace(
        original.analysis, sensitive_history_window_seconds=1), version="narrow")
    policies = iter([narrow])
    core = Analyzer(original, reload_policy=lambda: next(policies))
    seq = Seq().open(1, 200, "/root/.netrc").connect(3, 200, "93.184.216.34", 443)
    assert context_after(core, seq).history.sensitive_then_network
    core.reload()
    tracked = core.sessions[seq.session_id]
    seq2 = Seq(session_id=seq.session_id).open(10, 200, "/tmp/x")
    ctx = context_after(core, seq2)
    assert not ctx.history.sensitive_then_network
    assert ctx.history == history_flags(tracked.state, core.policy.analysis)


def test_classifier_equals_classify_for_odd_paths_and_addresses(bundled: Policy):
    """The cached classifier gives the same annotations as classify(), also for uncached paths."""
    rng = random.Random(7)
    a = bundled.analysis
    classifier = Classifier(a, cache_limit=5)     # clears while running
    state = SessionState(session_id=1, recent_limit=500, artifact_limit=10)
    for i in range(400):
        state.observe(random_event(rng, i * S))
    for e in list(state.recent) * 2:   # twice: second pass answered from the cache
        assert classifier(e) == classify(e, a)
        assert classifier(classify(e, a)) == classify(e, a)


def test_classifier_entry_equals_classify_of_the_event(bundled: Policy):
    """Classifier.entry (one build per event, the hot path) equals classify(from_event(ev)),
    also for odd paths, wire bytes paths and non-integer flags."""
    from analyzer.session_state import RecentEvent
    rng = random.Random(11)
    a = bundled.analysis
    classifier = Classifier(a, cache_limit=5)
    for i in range(600):
        ev = random_event(rng, i * S)
        if ev["kind"] == "open" and i % 7 == 0:
            ev["path"] = "/etc/shadow\xff".encode("latin-1")     # non-UTF-8 bytes off the wire
        if ev["kind"] == "open" and i % 11 == 0:
            ev["flags"] = True                                   # not an int: read as 0
        want = classify(RecentEvent.from_event(ev), a)
        assert classifier.entry(ev) == want


def test_original_mode_leaves_other_processes_proc_opens_out_of_the_window(original):
    """`openclaw agent --local` reads /proc/<pid>/stat of every process between two tool calls;
    the original's sessionizer dropped /proc opens, so its 64-event window never saw them."""
    s = Seq(session_id=1).open(1, 200, "/etc/shadow")
    for i in range(100):
        s.open(1.01 + i / 1000, 200, f"/proc/{3000 + i}/stat", target_tgid=3000 + i)
    s.connect(1.5, 200, "93.184.216.34", 443)
    assert context_after(Analyzer(original), s).history.sensitive_then_network
    flooded = Seq(session_id=1).open(1, 200, "/etc/shadow")
    for i in range(100):
        flooded.open(1.01 + i / 1000, 200, f"/srv/data/{i}.csv")
    flooded.connect(1.5, 200, "93.184.216.34", 443)
    assert not context_after(Analyzer(original), flooded).history.sensitive_then_network
