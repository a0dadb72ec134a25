"""Run ``python -m analyzer`` as a real process with a stand-in sessionizer on a private bus.

When the tests run as root the analyzer runs as the unprivileged ``casa`` user (as in production),
in a bus directory root:casa 0770.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zmq

import bus
from bus import topics as T
from tests.harness.users import CASA_USER, as_casa, shared_dir

__all__ = ["CHECKOUT", "Bench", "as_casa"]

CHECKOUT = Path(__file__).resolve().parents[2]


class Bench:
    """A stand-in sessionizer publisher, analyzer processes, and a subscriber to their output."""

    def __init__(self, rules_text: bytes | None = None) -> None:
        self.dir = shared_dir("casa-analyzer-test-")
        self.rules = self.dir / "rules.json"
        self.write_rules(rules_text or (CHECKOUT / "config" / "rules.eval.json").read_bytes())
        self.ctx = zmq.Context()
        self.xpub = bus.bind_publisher(self.ctx, "sessionizer", self.dir)
        self.xpub.setsockopt(zmq.XPUB_VERBOSE, 1)      # see every subscriber, not only the first
        self.pub = bus.Publisher(self.xpub, "sessionizer")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.sub: zmq.Socket | None = None
        self.subscribers = 0

    def write_rules(self, data: bytes) -> None:
        tmp = self.dir / "rules.json.tmp"
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.rules)

    def start(self, instances: int = 1, checkpoint: bool = False) -> None:
        env = {**os.environ, "CASA_BUS_DIR": str(self.dir), "CASA_RULES_PATH": str(self.rules),
               "CASA_ANALYZER_INSTANCES": str(instances), "PYTHONUNBUFFERED": "1",
               "CASA_STATE_DIR": str(self.dir / "state")}
        self.procs = []
        self.subscribers = 0
        for i in range(instances):
            with open(self.dir / f"analyzer-{i}.log", "ab") as log:
                self._spawn(i, env, log, checkpoint)
        if self.sub is None:
            self.sub = bus.connect_subscriber(self.ctx, bus.analyzer_streams(instances), ["analyzer."],
                                              self.dir)
        else:
            # A restart: drop what the stopped analyzer sent last (its final heartbeat), so only a
            # heartbeat of the new one counts as ready, i.e. our subscriber has reconnected to it.
            self.receive(0.2)
        self._wait_ready(instances)

    def _spawn(self, i: int, env: dict[str, str], log: Any, checkpoint: bool) -> None:
        kwargs: dict[str, Any] = ({"user": CASA_USER, "group": CASA_USER, "extra_groups": []}
                                  if as_casa() else {})
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "analyzer", "--instance", str(i)]
            + ([] if checkpoint else ["--no-checkpoint"]),
            cwd=CHECKOUT, env=env, stdout=log, stderr=subprocess.STDOUT, **kwargs))

    def _wait_ready(self, instances: int, timeout_s: float = 20.0) -> None:
        """Every analyzer subscribed to us, and we hear every analyzer's heartbeat."""
        deadline = time.monotonic() + timeout_s
        heard: set[str] = set()
        want = {f"analyzer-{i}" for i in range(instances)}
        while time.monotonic() < deadline and (self.subscribers < instances or heard != want):
            self._count_subscriptions()
            for topic, env in self.receive(0.1):
                if topic == "analyzer.heartbeat":
                    heard.add(env.stream)
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"analyzer exited with {p.returncode}: {self.logs()}")
        if self.subscribers < instances or heard != want:
            raise RuntimeError(f"analyzers not ready (subscribed={self.subscribers}, heard={heard}): "
                               f"{self.logs()}")

    def _count_subscriptions(self) -> None:
        while True:
            try:
                frame = self.xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frame[:1] == b"\x01" and frame[1:] == T.SESSIONIZER_EVENT.encode():
                self.subscribers += 1

    def send(self, topic: str, maps: list[dict[str, Any]]) -> None:
        self.pub.publish_now(topic, maps)

    def receive(self, timeout_s: float) -> list[tuple[str, Any]]:
        assert self.sub is not None
        out = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sub.poll(20):
                frames = self.sub.recv_multipart()
                env = bus.unpack(frames)
                out.append((env.topic, env))
        return out

    def collect(self, until: Any, timeout_s: float = 15.0) -> list[tuple[str, dict[str, Any]]]:
        """(topic, map) of every non-heartbeat message until ``until(collected)`` holds."""
        got: list[tuple[str, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not until(got):
            for topic, env in self.receive(0.1):
                if not T.is_heartbeat(topic):
                    got.extend((topic, m) for m in env.events)
        return got

    def logs(self) -> str:
        return "\n".join((self.dir / f"analyzer-{i}.log").read_text(errors="replace")
                         for i in range(len(self.procs)) if (self.dir / f"analyzer-{i}.log").exists())

    def stop(self) -> list[int]:
        codes = []
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                codes.append(p.wait(10))
            except subprocess.TimeoutExpired:
                p.kill()
                codes.append(p.wait(5))
        return codes

    def close(self) -> None:
        self.stop()
        if self.sub is not None:
            self.sub.close(0)
        self.xpub.close(0)
        self.ctx.term()
        shutil.rmtree(self.dir, ignore_errors=True)
