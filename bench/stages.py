"""Starting real CASA stages for a benchmark: private directories, environment, readiness, RSS.

    dirs = BenchDirs.create(Path(tmp))           # bus/, logs/, state/, casa.json (bench profile)
    with StageSet(dirs) as stages:
        stages.start("sessionizer")              # python -m sessionizer, as user casa when root
        stages.wait_ready(["sessionizer"])       # its first heartbeat arrived on the bus
        stages.rss_kb("sessionizer")

Every stage but the collector runs as the unprivileged ``casa`` user when the benchmark runs as
root, exactly as under supervisord, so the figures include nothing a root-only shortcut would
hide. Directories are root:casa 0770 for that reason. The collector runs as root.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

import bus
from bench.recording import PROFILE, ROOT_COMM
from bus.topics import heartbeat_topic

__all__ = ["BenchDirs", "StageSet", "STAGE_COMMANDS", "CHECKOUT", "HeartbeatWatch", "bench_config", "cpu_ticks",
           "cpu_seconds", "CLK_TCK"]

CHECKOUT = Path(__file__).resolve().parent.parent
STAGE_COMMANDS: dict[str, list[str]] = {
    "collector": ["-m", "collector"],
    "sessionizer": ["-m", "sessionizer"],
    "analyzer": ["-m", "analyzer", "--instance", "0"],
    "sinks-jsonl": ["-m", "sinks", "jsonl"],
}
STREAM_OF = {"collector": "collector", "sessionizer": "sessionizer", "analyzer": "analyzer-0"}
HEARTBEAT_OF = {"collector": "collector", "sessionizer": "sessionizer", "analyzer": "analyzer"}
STOP_TIMEOUT_S = 10.0
UNPRIVILEGED_USER = "casa"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int | None:
    """utime + stime of process ``pid``, in clock ticks (/proc/PID/stat); None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds process ``pid`` has used so far; None once it is gone."""
    ticks = cpu_ticks(pid)
    return None if ticks is None else ticks / CLK_TCK


def bench_config() -> dict[str, Any]:
    """config/casa.json's collector limits plus one invocation profile for the bench roots."""
    base = json.loads((CHECKOUT / "config" / "casa.json").read_text())
    return {"version": base.get("version", 1), "collector": base.get("collector", {}),
            "profiles": [{"name": PROFILE, "kind": "invocation",
                          "description": "bench/ synthetic and workload roots",
                          "match": [{"comm": [ROOT_COMM]}, {"exe_basename": [ROOT_COMM]}],
                          "close_grace_s": 2.0}]}


@dataclass(slots=True)
class BenchDirs:
    root: Path
    bus: Path
    logs: Path
    state: Path
    config: Path
    rules: Path

    @classmethod
    def create(cls, root: Path, rules: Path | None = None) -> BenchDirs:
        d = cls(root=root, bus=root / "bus", logs=root / "logs", state=root / "state",
                config=root / "casa.json", rules=rules or CHECKOUT / "rules.json")
        root.mkdir(parents=True, exist_ok=True)
        root.chmod(0o755)
        _check_reachable(root)
        for p in (d.bus, d.logs, d.state):
            p.mkdir(parents=True, exist_ok=True)
            _share_with_casa(p)
        d.config.write_text(json.dumps(bench_config(), indent=2))
        d.config.chmod(0o644)
        return d

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    @property
    def pid_file(self) -> Path:
        """The collector's pid file: root writes it, so it goes where casa cannot (StrictModes)."""
        return self.root / "collector.pid"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CASA_", "OTEL_"))}
        env.update({
            "CASA_BUS_DIR": str(self.bus), "CASA_CONFIG_PATH": str(self.config),
            "CASA_RULES_PATH": str(self.rules), "CASA_STATE_DIR": str(self.state),
            "CASA_ANALYZER_INSTANCES": "1", "CASA_LOG_DIR": str(self.logs),
            "CASA_EVENTS_LOG_PATH": str(self.log("events")), "CASA_SESSIONS_LOG_PATH": str(self.log("sessions")),
            "CASA_AUDIT_LOG_PATH": str(self.log("audit")), "CASA_ALERT_LOG_PATH": str(self.log("alert")),
            "PYTHONPATH": str(CHECKOUT), "PYTHONUNBUFFERED": "1",
        })
        return env


def _check_reachable(path: Path) -> None:
    """Stages run as user casa: every directory above the work directory must let others in."""
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        if not parent.stat().st_mode & 0o001:
            raise PermissionError(f"{parent} is not searchable by other users, so the stages (user "
                                  f"{UNPRIVILEGED_USER}) cannot reach {path}; use a --workdir outside it")


def _share_with_casa(path: Path) -> None:
    if os.geteuid() != 0:
        return
    try:
        os.chown(path, 0, grp.getgrnam(UNPRIVILEGED_USER).gr_gid)
    except KeyError:
        return
    path.chmod(0o770)


@dataclass(slots=True)
class HeartbeatWatch:
    """A SUB on the heartbeat topics of some streams; remembers the latest counters per stage."""

    sock: zmq.Socket
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)

    @classmethod
    def connect(cls, bus_dir: Path, stages: list[str]) -> HeartbeatWatch:
        streams = [STREAM_OF[s] for s in stages]
        topics = [heartbeat_topic(HEARTBEAT_OF[s]) for s in stages]
        return cls(bus.connect_subscriber(zmq.Context.instance(), streams, topics, bus_dir))

    def pump(self, timeout_s: float = 0.05) -> None:
        if not self.sock.poll(int(timeout_s * 1000)):
            return
        while True:
            try:
                frames = self.sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                env = bus.unpack(frames)
            except bus.BusError:
                continue
            stage = env.topic.split(".", 1)[0]
            self.latest[stage] = env.counters or {}
            self.first_seen.setdefault(stage, time.monotonic())

    def wait(self, stages: list[str], timeout_s: float) -> float:
        """Wait for a heartbeat of every stage; return when the last one first appeared."""
        names = [HEARTBEAT_OF[s] for s in stages]
        deadline = time.monotonic() + timeout_s
        while not all(n in self.first_seen for n in names):
            if time.monotonic() > deadline:
                missing = [n for n in names if n not in self.first_seen]
                raise TimeoutError(f"no heartbeat from {missing} within {timeout_s:.0f} s")
            self.pump(0.05)
        return max(self.first_seen[n] for n in names)

    def close(self) -> None:
        self.sock.close(0)


@dataclass(slots=True)
class StageSet:
    """The stage processes of one benchmark run; stopped (SIGTERM, then SIGKILL) on exit."""

    dirs: BenchDirs
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_at: dict[str, float] = field(default_factory=dict)

    def start(self, name: str, extra: list[str] | None = None) -> subprocess.Popen[bytes]:
        argv = [sys.executable, *STAGE_COMMANDS[name], *(extra or [])]
        as_casa = os.geteuid() == 0 and name != "collector" and _has_user(UNPRIVILEGED_USER)
        out = open(self.dirs.logs / f"{name}.stderr", "ab")
        self.started_at[name] = time.monotonic()
        proc = subprocess.Popen(argv, cwd=self.dirs.root, env=self.dirs.env(), stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                **({"user": UNPRIVILEGED_USER, "group": UNPRIVILEGED_USER,
                                    "extra_groups": []} if as_casa else {}))
        out.close()
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.dirs.logs / f"{name}.stderr").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"stage {name} exited with {p.returncode}; its stderr ends:\n{tail}")

    def wait_ready(self, stages: list[str], timeout_s: float = 20.0) -> float:
        watch = HeartbeatWatch.connect(self.dirs.bus, [s for s in stages if s in HEARTBEAT_OF])
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                self.check_alive()
                try:
                    return watch.wait(stages, timeout_s=0.5)
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
        finally:
            watch.close()

    def rss_kb(self, name: str) -> int:
        """Resident set of the stage's process (VmRSS)."""
        status = Path(f"/proc/{self.procs[name].pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_s(self, name: str) -> float:
        """User + system CPU seconds the stage's process has used so far (/proc/PID/stat)."""
        used = cpu_seconds(self.procs[name].pid)
        if used is None:
            raise ProcessLookupError(f"stage {name} has gone (pid {self.procs[name].pid})")
        return used

    def cpu_all(self) -> dict[str, float]:
        return {n: self.cpu_s(n) for n in self.procs}

    def stop(self, name: str) -> int | None:
        p = self.procs.pop(name, None)
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)

    def __enter__(self) -> StageSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _has_user(name: str) -> bool:
    return shutil.which("id") is not None and subprocess.run(
        ["id", name], capture_output=True, check=False).returncode == 0
