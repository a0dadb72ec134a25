"""The unprivileged stages (sessionizer, analyzer-0..N-1) as plain processes of the casa user.

    with Pipeline(tmp, config=..., rules=..., analyzers=2) as p:
        p.replay(recording)              # casa replay --fast in place of the collector
        decisions = p.decisions()

No supervisord and no collector: this is how a recording is pushed through the pipeline, and how
a replacement stage is checked (tests/stack/contract.py). Needs root (to run as casa).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import zmq

from bus import Subscriber, connect_subscriber
from bus.topics import ANALYZER_DECISION

__all__ = ["Pipeline"]

CHECKOUT = Path(__file__).resolve().parents[2]


class Pipeline:
    """Sessionizer + N analyzers in a private bus directory; collects analyzer.decision."""

    def __init__(self, *, config: Path, rules: Path, analyzers: int = 1,
                 stage_cmds: dict[str, list[str]] | None = None) -> None:
        self.root = Path("/tmp") / f"casa-pipe-{uuid.uuid4().hex[:8]}"
        self.bus_dir = self.root / "run"
        self.state_dir = self.root / "state"
        self.config, self.rules, self.analyzers = config, rules, analyzers
        self.stage_cmds = stage_cmds or {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self._ctx = zmq.Context()
        self._sock: zmq.Socket | None = None
        self._sub: Subscriber | None = None
        self.collected: list[dict[str, Any]] = []          # analyzer.decision maps
        self.messages: list[Any] = []                      # every analyzer.* envelope, in order

    def make_dirs(self) -> None:
        casa_uid, casa_gid = pwd.getpwnam("casa").pw_uid, grp.getgrnam("casa").gr_gid
        self.root.mkdir(mode=0o755)
        os.chmod(self.root, 0o755)
        self.bus_dir.mkdir()
        os.chown(self.bus_dir, 0, casa_gid)
        os.chmod(self.bus_dir, 0o770)
        self.state_dir.mkdir()
        os.chown(self.state_dir, casa_uid, casa_gid)

    def commands(self) -> dict[str, list[str]]:
        py = sys.executable
        cmds = {"sessionizer": [py, "-m", "sessionizer"]}
        for i in range(self.analyzers):
            cmds[f"analyzer-{i}"] = [py, "-m", "analyzer", "--instance", str(i), "--instances", str(self.analyzers)]
        cmds.update(self.stage_cmds)
        return cmds

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CASA_")}
        env.update(CASA_BUS_DIR=str(self.bus_dir), CASA_STATE_DIR=str(self.state_dir),
                   CASA_CONFIG_PATH=str(self.config), CASA_RULES_PATH=str(self.rules),
                   CASA_ANALYZER_INSTANCES=str(self.analyzers), PYTHONUNBUFFERED="1")
        return env

    def __enter__(self) -> Pipeline:
        self.make_dirs()
        try:
            for name, cmd in self.commands().items():
                self.logs[name] = self.root / f"{name}.log"
                with open(self.logs[name], "wb") as log:
                    self.procs[name] = subprocess.Popen(cmd, cwd=CHECKOUT, env=self.env(), user="casa",
                                                        group="casa", extra_groups=[], stdout=log, stderr=log)
            self._wait_sockets()
            streams = [f"analyzer-{i}" for i in range(self.analyzers)]
            topics = Subscriber.subscriptions(["analyzer."])
            self._sock = connect_subscriber(self._ctx, streams, topics, self.bus_dir)
            self._sub = Subscriber(self._sock, topics)
            self.pump_until_heard(streams)      # a heartbeat of each: the subscription is live
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_sockets(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        want = [n for n in self.commands()]
        while not all((self.bus_dir / f"{n}.sock").exists() for n in want):
            for n, p in self.procs.items():
                if p.poll() is not None:
                    raise AssertionError(f"{n} exited ({p.returncode}): {self.logs[n].read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"stages did not bind within {timeout_s} s")
            time.sleep(0.05)

    def pump_until_heard(self, streams: list[str], timeout_s: float = 20.0) -> None:
        """Pump until a message of every stream arrived (each heartbeats every second)."""
        deadline = time.monotonic() + timeout_s
        while not {s for s in streams} <= {env.stream for env in self.messages}:
            if time.monotonic() > deadline:
                raise AssertionError(f"no heartbeat from {streams} within {timeout_s} s")
            self.pump(0.1)

    def pump(self, seconds: float) -> None:
        assert self._sock is not None and self._sub is not None
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self._sock.poll(int(min(left, 0.1) * 1000) or 1):
                for env in self._sub.receive():
                    self.messages.append(env)
                    if env.topic == ANALYZER_DECISION:
                        self.collected += env.events

    def replay(self, recording: Path, *, settle_s: float = 3.0) -> subprocess.CompletedProcess:
        out = subprocess.run([sys.executable, "-m", "cli", "replay", str(recording), "--fast",
                              "--bus-dir", str(self.bus_dir), "--linger", "1"],
                             cwd=CHECKOUT, capture_output=True, text=True, timeout=120)
        self.pump(settle_s)
        return out

    def __exit__(self, *exc: object) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self._sock is not None:
            self._sock.close(0)
        self._ctx.term()
        if not os.environ.get("CASA_KEEP_STACK"):
            shutil.rmtree(self.root, ignore_errors=True)
