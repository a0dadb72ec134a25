"""Real JSONL logs for the CLI tests: analyzer-shaped maps written by the real jsonl sink
(sinks/jsonl.py, through the same record functions as in production), never hand-written JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bus.envelope import Envelope
from sinks.jsonl import JsonlSink, LogPaths
from tests.sinks.sink_maps import exec_event, readme_decision, session_map

S = 1_000_000_000
T0 = 1_800_000_000 * S                      # 2027-01-15T08:00:00Z


class LogWriter:
    """One real sink writing into ``log_dir``; ``reopen()`` after renaming its files, as after
    logrotate (the sink's SIGHUP)."""

    def __init__(self, log_dir: Path, write_time_ns: int = T0 + 3600 * S) -> None:
        self.sink = JsonlSink.from_paths(LogPaths.from_env({"CASA_LOG_DIR": str(log_dir)}),
                                         wall_clock_ns=lambda: write_time_ns)
        self.seq = 0

    def send(self, messages: list[tuple[str, list[dict[str, Any]]]]) -> None:
        for topic, maps in messages:
            self.seq += 1
            self.sink.handle(Envelope(topic, "analyzer-0", 1, self.seq, 0, maps))
        self.sink.drain()
        assert self.sink.malformed == 0

    def reopen(self) -> None:
        self.sink.reopen_all("rotated")

    def close(self) -> None:
        self.sink.close()


def write_logs(log_dir: Path, messages: list[tuple[str, list[dict[str, Any]]]],
               write_time_ns: int = T0 + 3600 * S) -> None:
    """Feed ``(topic, maps)`` envelopes to a real sink writing into ``log_dir``."""
    writer = LogWriter(log_dir, write_time_ns)
    writer.send(messages)
    writer.close()


def _ev(kind: str, sid: int, ts: int, tgid: int, ppid: int, comm: str, **kw: Any) -> dict[str, Any]:
    return {"kind": kind, "ts_ns": ts, "tgid": tgid, "tid": tgid, "ppid": ppid, "uid": 1000,
            "comm": comm, "root": 100, "session_id": sid, "profile": "openclaw-cli", **kw}


def attack_session(sid: int, t0: int, script: str | bytes = "/tmp/x.sh", leader: int = 100,
                   closed: bool = True) -> list[tuple[str, list[dict[str, Any]]]]:
    """An agent writes ``script``, bash runs it (write->exec: 5 + 4 = ALERT), curl connects."""
    node, sh, bash, curl = leader, leader + 1, leader + 2, leader + 3
    events = [
        _ev("exec", sid, t0, node, 1, "node", path="/usr/bin/node",
            argv=["node", "/usr/lib/node_modules/openclaw/openclaw.mjs", "agent", "-m", "hi"]),
        _ev("exec", sid, t0 + 1 * S, sh, node, "node", path="/bin/sh", argv=["/bin/sh", "-c", "x"]),
        _ev("open", sid, t0 + 2 * S, sh, node, "sh", path=script, flags=0o1101, mode=0o755, ret=3),
        _ev("exec", sid, t0 + 3 * S, bash, sh, "sh", path=script, argv=[script]),
        _ev("connect", sid, t0 + 4 * S, curl, bash, "curl", addr="127.0.0.1", port=8080, family=2),
        _ev("exit", sid, t0 + 5 * S, curl, bash, "curl"),
        _ev("exit", sid, t0 + 6 * S, bash, sh, "bash"),
    ]
    decision = readme_decision(
        session_id=sid, ts_ns=t0 + 3 * S, event=exec_event(session_id=sid, ts_ns=t0 + 3 * S, tgid=bash,
                                                             tid=bash, ppid=sh, path=script, argv=[script]),
        evidence={"history.write_then_exec_same_path": [
                      {"ts_ns": t0 + 2 * S, "tgid": sh, "kind": "open", "path": script},
                      {"ts_ns": t0 + 3 * S, "tgid": bash, "kind": "exec", "path": script}],
                  "execution.suspicious_path_exec": [
                      {"ts_ns": t0 + 3 * S, "tgid": bash, "kind": "exec", "path": script}]})
    state = session_map("closed" if closed else "flushed", session_id=sid, profile="openclaw-cli",
                        leader_tgid=node, created_ns=t0, updated_ns=t0 + 6 * S,
                        closed_ns=t0 + 8 * S if closed else None, tree_id=7,
                        triggered_rules=["write_then_exec_same_path", "write_then_exec_from_suspicious_path"])
    return [("analyzer.session", [opened(sid, t0)]), ("analyzer.event", events),
            ("analyzer.decision", [decision]), ("analyzer.session", [state])]


def opened(sid: int, t0: int) -> dict[str, Any]:
    """The lifecycle map that opens a session (without it the sink marks the session incomplete:
    it joined midway)."""
    return session_map("opened", session_id=sid, created_ns=t0, updated_ns=t0, score=0, action="IGNORE",
                       triggered_rules=[])


def benign_session(sid: int, t0: int, leader: int = 500) -> list[tuple[str, list[dict[str, Any]]]]:
    """`ls` and nothing else: no decision, score 0."""
    events = [_ev("exec", sid, t0, leader, 1, "node", path="/usr/bin/ls", argv=["ls"]),
              _ev("exit", sid, t0 + S // 2, leader, 1, "ls")]
    state = session_map("closed", session_id=sid, profile="openclaw-gateway", leader_tgid=leader,
                        created_ns=t0, updated_ns=t0 + S // 2, closed_ns=t0 + S, score=0, action="IGNORE",
                        triggered_rules=[])
    return [("analyzer.session", [opened(sid, t0)]), ("analyzer.event", events), ("analyzer.session", [state])]


def log_only_session(sid: int, t0: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """A LOG verdict (score 5), still open: a flushed snapshot only."""
    ev = exec_event(session_id=sid, ts_ns=t0, tgid=900, tid=900, ppid=1)
    decision = readme_decision(session_id=sid, ts_ns=t0, event=ev, action="LOG", score=5,
                               triggered_rules=[{"name": "write_then_exec_same_path",
                                                 "expr": "history.write_then_exec_same_path", "weight": 5}])
    state = session_map("flushed", session_id=sid, leader_tgid=900, created_ns=t0, updated_ns=t0,
                        score=5, action="LOG", triggered_rules=["write_then_exec_same_path"],
                        complete=False, lost_events=3, incomplete_reason="loss")
    return [("analyzer.session", [opened(sid, t0)]), ("analyzer.event", [ev]),
            ("analyzer.decision", [decision]), ("analyzer.session", [state])]
