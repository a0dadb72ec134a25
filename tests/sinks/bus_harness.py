"""A stand-in analyzer (publisher on analyzer-0 in a private bus dir) and sink subprocesses.

Used by the process-level sink tests; the stack and evaluation suites may reuse it. When the
tests run as root the sink runs as the unprivileged ``casa`` user, as in production.
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
from bus.topics import ANALYZER_SESSION
from tests.harness.heartbeats import HeartbeatWatch
from tests.harness.polling import wait_for
from tests.harness.users import CASA_USER, as_casa, shared_dir

CHECKOUT = Path(__file__).resolve().parents[2]


class StandInAnalyzer:
    """Binds analyzer-0 and publishes analyzer.* maps like the real analyzer."""

    def __init__(self, bus_dir: Path, stream: str = "analyzer-0") -> None:
        self.ctx = zmq.Context()
        self.sock = bus.bind_publisher(self.ctx, stream, bus_dir)
        self.pub = bus.Publisher(self.sock, "analyzer", stream)

    def wait_subscribed(self, timeout_s: float = 15.0) -> None:
        """Block until a subscriber has subscribed (XPUB shows subscriptions), else fail."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0 and self.sock.poll(int(left * 1000)):
            msg = self.sock.recv()
            # a subscription to this analyzer's topics (not a departed one's goodbye, nor the
            # sink's other prefix, responder., which every SUB socket of the sink sends too)
            if msg[:1] == b"\x01" and msg[1:].startswith(b"analyzer"):
                return
        raise TimeoutError("no subscriber connected to the stand-in analyzer")

    def send(self, topic: str, events: list[dict[str, Any]]) -> None:
        self.pub.publish_now(topic, [wire(e) for e in events])

    def skip(self, topic: str, n: int) -> None:
        """Pretend ``n`` messages of ``topic`` were sent and lost (a sequence gap)."""
        self.pub.last_seq[topic] = self.pub.last_seq.get(topic, 0) + n

    def heartbeat(self) -> None:
        self.pub.heartbeat({})

    def close(self) -> None:
        self.sock.close(linger=1000)
        self.ctx.term()


def wire(value: Any) -> Any:
    """Text as the bus carries it: surrogate-escaped str -> bytes (bus.to_wire), recursively."""
    if isinstance(value, str):
        return bus.to_wire(value)
    if isinstance(value, dict):
        return {k: wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wire(v) for v in value]
    return value


def start_sink(kind: str, bus_dir: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[bytes]:
    """``python -m sinks <kind>`` as a real process (as casa when root)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CASA_", "OTEL_"))}
    # Private checkpoints, not /var/lib/casa; relative to ``cwd``, which casa may enter even
    # where it cannot reach ``cwd`` by its absolute path (pytest's tmp dirs are root-only).
    full_env["CASA_STATE_DIR"] = "state"
    full_env.update(env)
    full_env["PYTHONPATH"] = str(CHECKOUT)
    kw: dict[str, Any] = {}
    if as_casa():
        kw.update(user=CASA_USER, group=CASA_USER, extra_groups=[])
        shutil.chown(cwd, CASA_USER, CASA_USER)
    return subprocess.Popen([sys.executable, "-m", "sinks", kind, "--bus-dir", str(bus_dir)],
                            cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **kw)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> tuple[int, str]:
    """SIGTERM, wait, return (exit code, stderr text)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err.decode(errors="replace")


# One heartbeat listener for every test package (tests/harness/heartbeats.py); the sink tests
# know it by this name: ``HeartbeatListener(bus_dir, "sinks-jsonl").poll()`` -> latest counters.
HeartbeatListener = HeartbeatWatch


__all__ = ["StandInAnalyzer", "HeartbeatListener", "start_sink", "stop", "wait_for", "shared_dir",
           "as_casa", "wire", "ANALYZER_SESSION"]
