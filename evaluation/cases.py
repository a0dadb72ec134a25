"""One evaluation case: one OpenClaw turn as casa-agent, and CASA's records for it, by session.

CASA's records are read straight off the bus (``analyzer.event``, ``analyzer.decision``,
``analyzer.session`` of every analyzer stream): a case's sessions are those that saw an event of
the agent user while the turn ran, and the case is complete when every one of them has published
its ``closed`` lifecycle record. No byte offsets, no fixed sleeps.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import bus
from bus import topics
from bus.background import BackgroundSubscriber
from evaluation.agent import AS_AGENT, EVAL_TMP, AgentHome, agent_uid, reset_scratch
from evaluation.fakellm import Scenario
from evaluation.toolchain import Toolchain

__all__ = ["MODES", "BusRecorder", "CaseRecords", "Received", "closed_sessions", "collect", "openclaw_turn_argv",
           "parse_turn", "run_case", "run_turn"]

MODES = ("gateway", "local")    # a turn through the long-running gateway, or `openclaw agent --local`
TURN_TIMEOUT_S = 180.0
CLOSE_TIMEOUT_S = 45.0          # after the turn: runtime sessions close idle_gap_s (5 s) after their last event
SETTLE_S = 2.5                  # after the turn, a session that has not shown up by then is not coming

log = logging.getLogger("casa.eval.runner")


@dataclass(slots=True)
class Received:
    """A bus map (event, decision, lifecycle record) and when it arrived here (wall clock, ns)."""

    recv_ns: int
    item: dict[str, Any]


@dataclass(slots=True)
class BusRecorder:
    """Collects analyzer events, decisions and lifecycle records in a background thread."""

    bus_dir: Path
    events: list[Received] = field(default_factory=list)
    decisions: list[Received] = field(default_factory=list)
    sessions: list[Received] = field(default_factory=list)
    lost_messages: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _tap: BackgroundSubscriber | None = None

    def start(self) -> None:
        wanted = [topics.ANALYZER_EVENT, topics.ANALYZER_DECISION, topics.ANALYZER_SESSION]
        self._tap = BackgroundSubscriber(self.bus_dir, bus.analyzer_streams(1), wanted, self._on_envelope,
                                         on_loss=self._on_loss, name="bus-recorder").start()
        time.sleep(0.3)     # the SUB's subscription reaches the XPUB (slow-joiner); once per run

    def _on_loss(self, stream: str, topic: str, lost: int) -> None:
        self.lost_messages += lost

    def _on_envelope(self, env: bus.Envelope, now: int) -> None:
        target = {topics.ANALYZER_EVENT: self.events, topics.ANALYZER_DECISION: self.decisions,
                  topics.ANALYZER_SESSION: self.sessions}.get(env.topic)
        if target is None:
            return
        with self.lock:
            target.extend(Received(now, bus.from_wire(e)) for e in env.events)

    def stop(self) -> None:
        if self._tap:
            self._tap.stop()

    def snapshot(self) -> tuple[list[Received], list[Received], list[Received]]:
        with self.lock:
            return list(self.events), list(self.decisions), list(self.sessions)


@dataclass(slots=True)
class CaseRecords:
    """What one case produced: OpenClaw's answer and CASA's records for the case's sessions."""

    case_id: str
    mode: str
    started_ns: int
    ended_ns: int
    openclaw_rc: int
    tool_calls: int
    final_text: str
    session_ids: list[int]
    complete: bool                        # every session closed before CLOSE_TIMEOUT_S
    sessions: list[dict[str, Any]]        # the latest analyzer.session record of each
    decisions: list[dict[str, Any]]       # each with recv_ns
    event_count: int
    event_kinds: dict[str, int]
    exec_paths: list[str]
    bus_lost_messages: int


def _window_sessions(recorder: BusRecorder, t0: int, t1: int, uid: int | None) -> set[int]:
    """Sessions with an event of the agent user during [t0, t1].

    The uid test keeps out sessions of anything else that runs OpenClaw on the machine at the
    same time (the collector watches every process); ``uid=None`` accepts any user.
    """
    events, _, _ = recorder.snapshot()
    return {int(r.item["session_id"]) for r in events
            if t0 <= int(r.item.get("ts_ns", 0)) <= t1 and (uid is None or r.item.get("uid") == uid)}


def closed_sessions(sessions: list[Received], ids: set[int]) -> set[int]:
    """Which of ``ids`` have published their last lifecycle record (closed, or shut down with the stage)."""
    return {int(r.item["session_id"]) for r in sessions
            if int(r.item["session_id"]) in ids and r.item.get("state") in ("closed", "shutdown")}


def _closed(recorder: BusRecorder, ids: set[int]) -> set[int]:
    return closed_sessions(recorder.snapshot()[2], ids)


def openclaw_turn_argv(toolchain: Toolchain, mode: str, prompt: str, session_key: str) -> list[str]:
    argv = [str(toolchain.openclaw), "agent"]
    if mode == "local":
        argv.append("--local")
    return argv + ["--agent", "main", "--session-id", session_key, "--json", "--message", prompt]


def parse_turn(stdout: bytes) -> tuple[int, str]:
    try:
        data = json.loads(stdout.decode("utf-8", "replace"))
    except ValueError:
        return 0, ""
    result = data.get("result", data) if isinstance(data, dict) else {}
    meta = result.get("meta", {}) if isinstance(result, dict) else {}
    calls = int(((meta.get("toolSummary") or {}).get("calls")) or 0)
    payloads = result.get("payloads") or [] if isinstance(result, dict) else []
    text = " ".join(str(p.get("text", "")) for p in payloads if isinstance(p, dict))
    return calls, meta.get("finalAssistantVisibleText") or text


def run_turn(toolchain: Toolchain, home: AgentHome, mode: str, prompt: str, out_dir: Path) -> tuple[int, int, str]:
    """One OpenClaw turn as casa-agent; returns (rc, tool calls, final text)."""
    argv = openclaw_turn_argv(toolchain, mode, prompt, f"eval-{uuid.uuid4().hex[:12]}")
    proc = subprocess.run(argv, **AS_AGENT, env=home.env(toolchain), cwd=EVAL_TMP, capture_output=True,
                          timeout=TURN_TIMEOUT_S, check=False)
    (out_dir / "openclaw.out").write_bytes(proc.stdout)
    (out_dir / "openclaw.err").write_bytes(proc.stderr)
    calls, text = parse_turn(proc.stdout)
    return proc.returncode, calls, text


def collect(recorder: BusRecorder, case_id: str, mode: str, t0: int, t1: int, rc: int, calls: int,
            text: str, uid: int | None = None) -> CaseRecords:
    """Wait until every session the agent (``uid``) had events in during [t0, t1] has closed, then
    gather its records."""
    settle_until = time.monotonic() + SETTLE_S
    deadline = time.monotonic() + CLOSE_TIMEOUT_S
    while True:
        ids = _window_sessions(recorder, t0, t1, uid)
        done = ids and _closed(recorder, ids) == ids
        if time.monotonic() >= settle_until and (done or not ids):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.1)
    ids = _window_sessions(recorder, t0, t1, uid)
    complete = _closed(recorder, ids) == ids
    events, decisions, sessions = recorder.snapshot()
    latest: dict[int, dict[str, Any]] = {}
    for r in sessions:
        sid = int(r.item["session_id"])
        if sid in ids:
            latest[sid] = r.item
    case_events = [r.item for r in events if int(r.item["session_id"]) in ids]
    kinds: dict[str, int] = {}
    for e in case_events:
        kinds[e.get("kind", "?")] = kinds.get(e.get("kind", "?"), 0) + 1
    return CaseRecords(
        case_id=case_id, mode=mode, started_ns=t0, ended_ns=t1, openclaw_rc=rc, tool_calls=calls,
        final_text=text, session_ids=sorted(ids), complete=complete,
        sessions=[_jsonable(latest[s]) for s in sorted(latest)],
        decisions=[_jsonable({**r.item, "recv_ns": r.recv_ns}) for r in decisions
                   if int(r.item["session_id"]) in ids],
        event_count=len(case_events), event_kinds=kinds,
        exec_paths=[str(e.get("path", "")) for e in case_events if e.get("kind") == "exec"],
        bus_lost_messages=recorder.lost_messages)


def _jsonable(obj: Any) -> Any:
    """Bus maps as JSON: str with surrogate escapes becomes its repr-safe form."""
    return json.loads(json.dumps(obj, default=str, ensure_ascii=True).encode("utf-8", "surrogateescape")
                      .decode("utf-8", "replace"))


def run_case(scenario: Scenario, mode: str, toolchain: Toolchain, home: AgentHome, recorder: BusRecorder,
             out_dir: Path) -> CaseRecords:
    """Run one scenario in one mode and collect its records (written to out_dir/records.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    reset_scratch()
    (out_dir / "prompt.txt").write_text(scenario.prompt + "\n")
    t0 = time.time_ns()
    rc, calls, text = run_turn(toolchain, home, mode, scenario.prompt, out_dir)
    t1 = time.time_ns()
    records = collect(recorder, scenario.id, mode, t0, t1, rc, calls, text, agent_uid())
    (out_dir / "records.json").write_text(json.dumps(asdict(records), indent=2))
    log.info("case done | id=%s mode=%s rc=%d tools=%d sessions=%s events=%d decisions=%d complete=%s",
             scenario.id, mode, rc, calls, records.session_ids, records.event_count, len(records.decisions),
             records.complete)
    return records
