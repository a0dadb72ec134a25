"""Start a real collector and read what it publishes: reusable by other test suites.

    from tests.collector.harness import CollectorProcess, EventTap, test_config, make_test_root

    cfg = test_config(tmp / "casa.json", pid_file=tmp / "c.pid")   # profile "test-root"
    root_bin = make_test_root(tmp)                                  # /bin/bash named TEST_ROOT_COMM
    with CollectorProcess(cfg, tmp / "bus") as col, EventTap(tmp / "bus") as tap:
        p = subprocess.run([root_bin, "-c", "/bin/true"])
        tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == p.pid)

Needs root (it loads eBPF). The collector is ready when its pid file exists: it writes it after
attaching the probes and seeding roots from /proc. The tap is ready when the first heartbeat has
arrived (a subscription is only active after ZeroMQ's handshake; events sent before are lost).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import zmq

import bus
from bus.events import TEXT_FIELDS
from bus.topics import COLLECTOR_CONTROL, COLLECTOR_EVENT

__all__ = ["CollectorProcess", "EventTap", "test_config", "make_test_root", "running_collector",
           "TEST_ROOT_COMM", "TEST_PROFILE", "CHECKOUT"]

CHECKOUT = Path(__file__).resolve().parents[2]
# Unique per test run (comm holds 15 bytes): suites that run at the same time on this machine each
# start their own test roots, and a shared name would make every collector see the others' roots.
TEST_ROOT_COMM = f"casa-tr-{os.getpid() % 100000:05d}"
TEST_PROFILE = "test-root"
START_TIMEOUT_S = 60.0


def test_config(path: Path, *, pid_file: Path, ringbuf_pages: int = 256, max_args: int = 16,
                max_arg_len: int = 128, profiles: list[dict[str, Any]] | None = None) -> Path:
    """Write a config/casa.json whose one profile matches processes named TEST_ROOT_COMM."""
    data = {
        "version": 1,
        "collector": {"max_args": max_args, "max_arg_len": max_arg_len,
                      "ringbuf_pages": ringbuf_pages, "pid_file": str(pid_file)},
        "profiles": profiles or [{"name": TEST_PROFILE, "kind": "invocation",
                                  "match": [{"comm": [TEST_ROOT_COMM]}]}],
    }
    path.write_text(json.dumps(data, indent=2))
    return path


test_config.__test__ = False   # type: ignore[attr-defined]  # not a pytest test


def make_test_root(directory: Path, name: str = TEST_ROOT_COMM) -> Path:
    """A copy of /bin/bash whose comm and exe basename are ``name`` (unique on the machine)."""
    target = directory / name
    shutil.copy2("/bin/bash", target)
    target.chmod(0o755)
    return target


class CollectorProcess:
    """``python -m collector`` as a subprocess; a context manager that stops it with SIGINT."""

    def __init__(self, config: Path, bus_dir: Path, extra_args: list[str] | None = None,
                 log_path: Path | None = None) -> None:
        self.config = config
        self.bus_dir = bus_dir
        self.pid_file = Path(json.loads(config.read_text())["collector"]["pid_file"])
        self.extra_args = extra_args or []
        self.log_path = log_path or bus_dir.parent / "collector.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    def start(self) -> CollectorProcess:
        self.bus_dir.mkdir(parents=True, exist_ok=True)
        if self.pid_file.exists():
            self.pid_file.unlink()
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "collector", "--config", str(self.config),
               "--bus-dir", str(self.bus_dir), *self.extra_args]
        self.proc = subprocess.Popen(cmd, cwd=CHECKOUT, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.pid_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited with {self.proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"collector not ready after {START_TIMEOUT_S} s: {self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGINT, wait; returns the exit code (kills after ``timeout_s``)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log:
            self._log.close()
        return self.proc.returncode

    def __enter__(self) -> CollectorProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class EventTap:
    """A subscriber on the collector stream that keeps everything it received."""

    def __init__(self, bus_dir: Path, topics: list[str] | None = None) -> None:
        self.topics = topics or [COLLECTOR_EVENT, COLLECTOR_CONTROL]
        self.ctx = zmq.Context()
        sock = bus.connect_subscriber(self.ctx, ["collector"], bus.Subscriber.subscriptions(self.topics),
                                      bus_dir)
        self.sub = bus.Subscriber(sock, self.topics)
        self.events: list[dict[str, Any]] = []
        self.controls: list[dict[str, Any]] = []
        self.heartbeats: list[bus.Envelope] = []

    def drain(self) -> int:
        n = 0
        for env in self.sub.receive(10_000):
            if bus.topics.is_heartbeat(env.topic):
                self.heartbeats.append(env)
            elif env.topic == COLLECTOR_CONTROL:
                self.controls.extend(env.events)
            else:
                self.events.extend(_from_wire(e) for e in env.events)
            n += 1
        return n

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0) -> dict[str, Any]:
        """The first received event matching ``pred``; AssertionError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            for e in self.events[seen:]:
                if pred(e):
                    return e
            seen = len(self.events)
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching event within {timeout_s} s ({len(self.events)} received)")
            if not self.drain():
                time.sleep(0.01)

    def wait_heartbeat(self, timeout_s: float = 10.0) -> bus.Envelope:
        """The next heartbeat (proves the subscription is live; carries the counters)."""
        have = len(self.heartbeats)
        deadline = time.monotonic() + timeout_s
        while len(self.heartbeats) == have:
            if time.monotonic() > deadline:
                raise AssertionError(f"no collector heartbeat within {timeout_s} s")
            if not self.drain():
                time.sleep(0.01)
        return self.heartbeats[-1]

    def of(self, **fields: Any) -> list[dict[str, Any]]:
        """Received events whose fields equal ``fields``."""
        return [e for e in self.events if all(e.get(k) == v for k, v in fields.items())]

    def close(self) -> None:
        self.sub.sock.close(0)
        self.ctx.term()

    def __enter__(self) -> EventTap:
        self.wait_heartbeat()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@contextmanager
def running_collector(tmp: Path, **config: Any) -> Iterator[tuple[CollectorProcess, EventTap, Path]]:
    """(collector, tap, TEST_ROOT_COMM binary) in ``tmp``; ``config`` goes to :func:`test_config`.

    The tap has seen a heartbeat, so every event of a tree started afterwards arrives.
    """
    cfg = test_config(tmp / "casa.json", pid_file=tmp / "collector.pid", **config)
    root_bin = make_test_root(tmp)
    with CollectorProcess(cfg, tmp / "bus") as col, EventTap(tmp / "bus") as tap:
        yield col, tap, root_bin


def _from_wire(ev: dict[str, Any]) -> dict[str, Any]:
    out = dict(ev)
    for k in TEXT_FIELDS:
        if isinstance(out.get(k), bytes):
            out[k] = bus.from_wire(out[k])
    if isinstance(out.get("argv"), list):
        out["argv"] = [bus.from_wire(a) for a in out["argv"]]
    if isinstance(out.get("ld_env"), dict):
        out["ld_env"] = {k: bus.from_wire(v) for k, v in out["ld_env"].items()}
    return out


def as_root() -> bool:
    return os.geteuid() == 0
