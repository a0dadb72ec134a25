"""CASA for an evaluation run: the collector (root), sessionizer, analyzer and JSONL sink (user
casa) in private bus/log/state directories with the column's rules, or a stack already running
(``external``). Started once per run; every case's records come off its bus."""

from __future__ import annotations

import grp
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

import bus
from bench.stages import STAGE_COMMANDS
from bus import topics
from evaluation.packs import eval_rules
from evaluation.process_group import stop_group
from evaluation.toolchain import CHECKOUT, NODE_MODULES

__all__ = ["CasaStack", "STAGES", "eval_casa_config"]

STAGE_READY_TIMEOUT_S = 60.0
STAGE_STOP_S = 10.0

STAGES = STAGE_COMMANDS          # the stages the benchmarks run, started the same way (one copy)

log = logging.getLogger("casa.eval.runner")


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
            stop_group(self.procs.pop(name), STAGE_STOP_S)
