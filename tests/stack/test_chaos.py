"""Chaos under real load: kill -9 every stage in turn while an agent keeps the real collector busy.

One real stack (supervisord, the eBPF collector, the sessionizer, two analyzers, both sinks with a
real OTLP receiver). A load agent keeps >= 2,000 events/s flowing through the collector for the
whole test. Then, for each stage -- collector, sessionizer, analyzer-0, analyzer-1, sinks-jsonl,
sinks-otel -- in turn:

* an **attacker** session writes a payload under /tmp (step 1), the stage is killed with SIGKILL
  and restarted by supervisord, and only then does the attacker execute the payload (step 2):
  the session keeps its id and its state, so the bundled rules still ALERT
  (write_then_exec_same_path + write_then_exec_from_suspicious_path);
* a **witness** session creates numbered files across the kill: whatever of it is missing from
  events.log must be counted somewhere and its session must close ``complete: false``; where
  nothing had to be lost (the trace sink, or the other analyzer's sessions) nothing is, and the
  session is complete.

Before the kills, `casa reload` under that load must be acknowledged by every stage; after them,
`casa status` must show the loss each restart caused, and every counter the stages publish must
be declared in bus/counters.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bus import Envelope
from bus.background import BackgroundSubscriber
from bus.counters import for_stream
from tests.sinks.otlp_receiver import OtlpReceiver
from tests.stack.stack import Stack

pytestmark = [pytest.mark.root, pytest.mark.stack, pytest.mark.timeout(600)]

VICTIMS = ["collector", "sessionizer", "analyzer-0", "analyzer-1", "sinks-jsonl", "sinks-otel"]
MIN_EVENTS_PER_S = 2000
WITNESS_FILES = 150
# ~100 file creations (one open each) per 40 ms sleep, plus the sleep's own fork/exec/exit.
LOAD = "mkdir -p load; while :; do for i in $(seq 100); do : > load/f$((i % 10)); done; sleep 0.04; done"
# What each stage's restart is counted as, downstream or by itself (bus/counters.py names).
RESTART_COUNTED_BY = {
    "collector": ("sessionizer", ("collector_restarts", "bus_publisher_restarts")),
    "sessionizer": ("sessionizer", ("bus_lost_messages", "lost_bus")),
    "analyzer-0": ("analyzer-0", ("lost_messages",)),
    "analyzer-1": ("analyzer-1", ("lost_messages",)),
    "sinks-jsonl": ("sinks-jsonl", ("lost_messages",)),
    "sinks-otel": ("sinks-otel", ("lost_messages", "unsaved_at_restart")),
}


class Owners:
    """Which session each agent got, and which analyzer owns it: a tap on analyzer.session of both
    instances (lifecycle maps carry session_id and leader_tgid; events.log lines carry no leader_tgid)."""

    def __init__(self, bus_dir: Path) -> None:
        self.owner: dict[int, str] = {}                # session_id -> analyzer stream
        self.session_of: dict[int, int] = {}           # leader tgid -> session_id
        self.heartbeats: set[str] = set()
        self.tap = BackgroundSubscriber(bus_dir, ["analyzer-0", "analyzer-1"], ["analyzer.session"],
                                        self._on_envelope, name="chaos-owners").start()

    def _on_envelope(self, env: Envelope, _recv_ns: int) -> None:
        if env.topic == "analyzer.heartbeat":
            self.heartbeats.add(env.stream)
        for m in env.events:
            if isinstance(m.get("session_id"), int):
                self.owner.setdefault(m["session_id"], env.stream)
                if isinstance(m.get("leader_tgid"), int):
                    self.session_of.setdefault(m["leader_tgid"], m["session_id"])

    def close(self) -> None:
        self.tap.stop()


@dataclass
class Agent:
    """An agent process of the test profile and the session the pipeline gave it."""

    tag: str
    proc: Any
    sid: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _sid_of(st: Stack, owners: Owners, agent: "Agent") -> int:
    """The session of an agent: the one whose leader is its process (an invocation root)."""
    st.wait_for_log("events.log", lambda r: r["pid"] == agent.proc.pid and agent.tag in r.get("path", ""),
                    timeout_s=60)
    return st.wait_until(lambda: owners.session_of.get(agent.proc.pid), 30, f"the session of {agent.tag}")


def _owned_by(st: Stack, owners: Owners, start: Any, want: str | None, tries: int = 6) -> Agent:
    """Start agents (``start(attempt)``) until one's session is owned by analyzer ``want`` (any
    when None); the others are killed."""
    for attempt in range(tries):
        agent = start(attempt)
        agent.sid = _sid_of(st, owners, agent)
        st.wait_until(lambda: agent.sid in owners.owner, 30, f"the owner of session {agent.sid}")
        if want is None or owners.owner[agent.sid] == want:
            return agent
        agent.proc.kill()
        agent.proc.wait()
    raise AssertionError(f"no session landed on {want} in {tries} tries")


def _attacker(st: Stack, tag: str) -> Agent:
    fifo = st.work / f"go-{tag}"
    os.mkfifo(fifo, 0o666)
    os.chmod(fifo, 0o666)
    payload = f"$PWD/atk-{tag}.sh"
    script = (f"printf '#!/bin/sh\\necho pwn\\n' > \"{payload}\"; chmod +x \"{payload}\"; "
              f"read go < \"$PWD/go-{tag}\"; \"{payload}\"")
    return Agent(f"atk-{tag}.sh", st.start_agent(script), extra={"fifo": fifo})


def _witness(st: Stack, tag: str) -> Agent:
    script = f"mkdir -p w; for i in $(seq {WITNESS_FILES}); do : > w/wit-{tag}-$i; sleep 0.05; done"
    return Agent(f"wit-{tag}-", st.start_agent(script))


def _release(agent: Agent) -> None:
    with open(agent.extra["fifo"], "w") as fh:
        fh.write("go\n")
    assert agent.proc.wait(30) == 0


def _alerted(st: Stack, attacker: Agent, victim: str) -> dict:
    try:
        return st.wait_for_log("alert.log", lambda r: r["session_id"] == attacker.sid and any(
            t.get("name") == "write_then_exec_same_path" for t in r["decision"]["triggered_rules"]), timeout_s=60)
    except AssertionError as exc:                  # say what the pipeline did see
        execs = [r for r in st.log("events.log") if r["type"] == "EXECVE" and attacker.tag in r.get("path", "")]
        alerts = [(r["session_id"], r["event"].get("path")) for r in st.log("alert.log")]
        audits = [r for r in st.log("audit.log") if r["session_id"] == attacker.sid]
        pid = str(attacker.proc.pid)
        logs = {n: [line for line in st.stage_log(n).splitlines() if pid in line or "restart" in line][-8:]
                for n in ("collector", "sessionizer", "analyzer-0", "analyzer-1")}
        raise AssertionError(f"kill -9 {victim}: no ALERT for session {attacker.sid} (pid {pid}); "
                             f"payload execs in events.log: {execs}; alerts: {alerts}; audits of the "
                             f"session: {audits}; stage log lines: {logs}") from exc


def _closed(st: Stack, sid: int) -> dict:
    return st.wait_for_log("sessions.log", lambda r: r["session_id"] == sid and r["reason"] == "session_closed",
                           timeout_s=60)


def _missing(st: Stack, w: Agent) -> list[int]:
    seen = {int(r["path"].rsplit("-", 1)[1]) for r in st.log("events.log")
            if r["type"] == "OPENAT" and r["pid"] == w.proc.pid and w.tag in r.get("path", "")}
    return sorted(set(range(1, WITNESS_FILES + 1)) - seen)


def _checkpointed(st: Stack, victim: str, sid: int, holds: Callable[[dict], bool]) -> None:
    """The restarting stage can only keep what its last checkpoint holds: wait for it to hold the
    session, with the state the test needs after the kill (``holds``). The session must be found by
    its id in the checkpoint's session list, not as a substring of the file: tree ids and session ids
    come from one counter, so an older tree's id can equal this session's id (a substring match once
    let the kill come before the session was saved). Likewise the state must be the event itself:
    the agent's argv names the payload, so a text match once took a checkpoint from before the
    payload's write for one that held it."""
    path = st.state_dir / f"{victim}.json"
    st.wait_until(lambda: _saved_session(path, sid, holds), 30, f"{victim}'s checkpoint holding session {sid}")


def _saved_session(path: Path, sid: int, holds: Callable[[dict], bool]) -> bool:
    """Whether the checkpoint at ``path`` lists session ``sid`` with ``holds(session)`` true
    (the analyzer's top-level ``sessions``; the sessionizer's ``checkpoint.sessions``)."""
    try:
        doc = json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError):
        return False                          # not written yet
    sessions = doc.get("sessions", doc.get("checkpoint", {}).get("sessions", []))
    return any(s.get("session_id") == sid and holds(s) for s in sessions)


@pytest.fixture
def chaos_stack() -> Iterator[tuple[Stack, OtlpReceiver, Owners]]:
    with OtlpReceiver() as rx, Stack(analyzers=2, env={"CASA_OTEL_EXPORTER_OTLP_ENDPOINT": rx.url}) as st:
        owners = Owners(st.bus_dir)
        try:
            st.wait_until(lambda: owners.heartbeats >= {"analyzer-0", "analyzer-1"}, 30, "the owner tap")
            yield st, rx, owners
        finally:
            owners.close()


def _rate(st: Stack) -> float:
    first = st.counters(["collector"], lambda c: "sent_events" in c.get("collector", {}))["collector"]
    t0 = time.monotonic()
    time.sleep(2.0)                        # a rate needs an interval; this is a measurement, not a wait
    last = st.counters(["collector"], lambda c: c.get("collector", {}).get("sent_events", 0)
                       > first["sent_events"])["collector"]
    return (last["sent_events"] - first["sent_events"]) / (time.monotonic() - t0)


def test_kill9_each_stage_under_load(chaos_stack: tuple[Stack, OtlpReceiver, Owners]) -> None:
    st, rx, owners = chaos_stack
    load = st.start_agent(LOAD)
    try:
        st.wait_for_log("events.log", lambda r: "load/f" in r.get("path", ""))
        assert (rate := _rate(st)) >= MIN_EVENTS_PER_S, f"load is {rate:.0f} events/s"
        reload = st.casa("reload", "--pid-file", str(st.pid_file), "-t", "30")
        assert reload.returncode == 0, reload.stdout + reload.stderr
        for stage in ("sessionizer", "analyzer-0", "analyzer-1"):
            assert f"{stage}: ok (applied" in reload.stdout
        for victim in VICTIMS:
            _kill_one(st, owners, victim)
        assert (rate := _rate(st)) >= MIN_EVENTS_PER_S, f"load after the kills is {rate:.0f} events/s"
    finally:
        load.kill()
        load.wait()
    _every_counter_is_declared(st)


def _kill_one(st: Stack, owners: Owners, victim: str) -> None:
    analyzer = victim if victim.startswith("analyzer-") else None
    attacker = _owned_by(st, owners, lambda n: _attacker(st, f"{victim}.{n}"), analyzer)
    witnesses = [_owned_by(st, owners, lambda n: _witness(st, f"{victim}.{n}"), analyzer)]
    if analyzer:                          # the other analyzer's sessions lose nothing
        other = "analyzer-1" if analyzer == "analyzer-0" else "analyzer-0"
        witnesses.append(_owned_by(st, owners, lambda n: _witness(st, f"{victim}-other.{n}"), other))
    if analyzer:                          # the payload's write folded in (not just argv naming it)
        _checkpointed(st, analyzer, attacker.sid, lambda s: any(
            (r.get("path") or "").endswith("/" + attacker.tag) for r in s.get("recent", [])))
    elif victim == "sessionizer":
        _checkpointed(st, "sessionizer", attacker.sid, lambda s: s.get("leader_tgid") == attacker.proc.pid)
    old = st.kill9(victim)
    st.wait_restarted(victim, old)
    st.counters([victim], lambda c: victim in c)           # it heartbeats again
    _release(attacker)
    alert = _alerted(st, attacker, victim)                  # same session id, state kept: ALERT
    assert alert["decision"]["action"] == "ALERT", (victim, alert)
    for w in witnesses:
        assert w.proc.wait(60) == 0
    stage, names = RESTART_COUNTED_BY[victim]
    counted = st.counters([stage], lambda c: any(c.get(stage, {}).get(n) for n in names))
    _check_witnesses(st, victim, witnesses, counted)


def _check_witnesses(st: Stack, victim: str, witnesses: list[Agent], counted: dict) -> None:
    for i, w in enumerate(witnesses):
        closed = _closed(st, w.sid)
        missing = _missing(st, w)
        print(f"kill -9 {victim}: witness {w.tag} session {w.sid} missing={len(missing)} "
              f"complete={closed['session']['complete']} counted={counted}")
        must_be_whole = victim == "sinks-otel" or i == 1      # nothing had to be lost
        if must_be_whole:
            assert missing == [] and closed["session"]["complete"] is True, (victim, w.tag, missing, closed)
        elif missing:
            assert closed["session"]["complete"] is False, (
                f"kill -9 {victim}: {len(missing)} witness opens missing from events.log but session "
                f"{w.sid} is complete; counters: {counted}")


def _every_counter_is_declared(st: Stack) -> None:
    names = st.names()
    got = st.counters(names, lambda c: set(c) >= set(names))
    undeclared = {s: for_stream(s).undeclared(c) for s, c in got.items()}
    assert all(not u for u in undeclared.values()), undeclared
    text = st.casa("status", "--url", st.url).stdout
    for s, c in got.items():
        for name, value in for_stream(s).loss(c).items():
            assert f"{name}={value}" in text or name in text, (s, name, text)
