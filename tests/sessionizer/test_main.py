"""The real stage: ``python -m sessionizer`` (as user casa when we are root) between a test
publisher standing in for the collector and a test subscriber standing in for the analyzer.
Real ZeroMQ ipc sockets, real processes (their pids are the agent roots, so the liveness check
sees them alive), real signals.
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from bus import Publisher, Subscriber, bind_publisher, connect_subscriber
from tests.harness.users import shared_dir
from tests.sessionizer.synthetic_events import CONFIG, RULES, Events

CHECKOUT = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
WAIT_S = 10.0
CLI_ARGV = ["node", "/x/openclaw", "agent", "-m", "q"]


def cli_exec(ev: Events, tgid: int, ts_ns: int) -> dict[str, Any]:
    """The exec of an ``openclaw agent`` CLI root (a child of pid 1) at ``ts_ns``."""
    return {**ev.exec(tgid, 1, "/usr/bin/node", CLI_ARGV), "ts_ns": ts_ns}


@dataclass
class Bench:
    """Everything one running sessionizer needs, and what it published."""

    directory: Path
    proc: subprocess.Popen
    ctx: zmq.Context
    collector: Publisher
    tap: Subscriber
    rules: Path
    got: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    heartbeats: list[dict[str, Any]] = field(default_factory=list)

    def send(self, events: list[dict[str, Any]]) -> None:
        self.collector.publish_now("collector.event", events)

    def pump(self, until, timeout_s: float = WAIT_S) -> None:
        """Read the sessionizer's output until ``until(self)`` holds (or fail after timeout)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.tap.sock.poll(50):
                for env in self.tap.receive():
                    if env.topic.endswith(".heartbeat"):
                        self.heartbeats.append(env.counters or {})
                    else:
                        self.got += [(env.topic, e) for e in env.events]
            if until(self):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"sessionizer exited with {self.proc.returncode}: {self.stderr()}")
        raise AssertionError(f"timed out; got {self.got[-5:]}; stderr: {self.stderr()}")

    def of(self, topic: str) -> list[dict[str, Any]]:
        return [m for t, m in self.got if t == topic]

    def open_cli_session(self, ev: Events, cli: int, now: int) -> dict[str, Any]:
        """Send an ``openclaw agent`` CLI root's exec at ``now``: the one session it opens."""
        self.send([cli_exec(ev, cli, now)])
        self.pump(lambda b: b.of("sessionizer.session"))
        (opened,) = self.of("sessionizer.session")
        return opened

    def closed_session(self) -> dict[str, Any]:
        """Read until a session closes: its closed map."""
        self.pump(lambda b: any(m["state"] == "closed" for m in b.of("sessionizer.session")))
        return next(m for m in self.of("sessionizer.session") if m["state"] == "closed")

    def stderr(self) -> str:
        return (self.directory / "stderr.log").read_text(errors="replace")[-3000:]


def _wait_for_subscriber(sock: zmq.Socket) -> None:
    """An XPUB learns of each subscription: wait until the sessionizer has subscribed."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if sock.poll(100) and sock.recv().startswith(b"\x01collector.event"):
            return
    raise AssertionError("the sessionizer never subscribed to collector.event")


def _start(directory: Path, rules: Path, args: tuple[str, ...] = (),
           env_extra: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "CASA_BUS_DIR": str(directory), "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    with open(directory / "stderr.log", "ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "sessionizer", "--rules", str(rules), "--config", str(CONFIG),
             "--state-dir", str(directory / "state"), "--flush-interval-s", "1",
             "--checkpoint-interval-s", "0.2", *args],
            cwd=CHECKOUT, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
            user="casa" if IS_ROOT else None, group="casa" if IS_ROOT else None)


def _connect(b: Bench) -> None:
    """Wait until the sessionizer subscribed to us and we receive its heartbeats."""
    _wait_for_subscriber(b.collector.sock)
    b.pump(lambda b: any(hb.get("pid") == b.proc.pid for hb in b.heartbeats))   # not a stale one


@pytest.fixture
def bench(request: pytest.FixtureRequest) -> Iterator[Bench]:
    """The running stage; ``@pytest.mark.parametrize("bench", [(args, env)], indirect=True)``
    adds command-line arguments and environment variables."""
    args, env_extra = getattr(request, "param", ((), {}))
    directory = shared_dir("casa-sessionizer-test-")
    rules = directory / "rules.json"
    shutil.copy(RULES, rules)
    os.chmod(rules, 0o664)
    if IS_ROOT:
        os.chown(rules, 0, grp.getgrnam("casa").gr_gid)
    ctx = zmq.Context()
    collector = Publisher(bind_publisher(ctx, "collector", directory), "collector")
    topics = Subscriber.subscriptions(["sessionizer."])
    tap = Subscriber(connect_subscriber(ctx, ["sessionizer"], topics, directory), topics)
    b = Bench(directory, _start(directory, rules, args, env_extra), ctx, collector, tap, rules)
    try:
        _connect(b)
        yield b
    finally:
        if b.proc.poll() is None:               # b.proc: the latest one (tests restart it)
            b.proc.kill()
        b.proc.wait()
        ctx.destroy(linger=0)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def agents() -> Iterator[tuple[int, int]]:
    """Two real, live processes standing in for the gateway and the CLI."""
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(2)]
    yield procs[0].pid, procs[1].pid
    for p in procs:
        p.kill()
        p.wait()


def test_runs_as_the_casa_user(bench):
    status = Path(f"/proc/{bench.proc.pid}/status").read_text()
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert int(uid) == (pwd_uid("casa") if IS_ROOT else os.getuid())


def pwd_uid(name: str) -> int:
    import pwd
    return pwd.getpwnam(name).pw_uid


def test_session_events_lifecycle_and_shutdown_over_the_bus(bench, agents):
    ev = Events()
    gateway, cli = agents
    now = time.time_ns()
    at = lambda e, dt: {**e, "ts_ns": now + int(dt * 1e9)}   # noqa: E731 - local time shifter
    odd = b"/tmp/\xff-odd\npath/" + b"y" * 3000
    bench.send([
        at(ev.root(gateway, 1, "openclaw-gateway"), 0),
        at(ev.exec(cli, 1, "/opt/nvm/v24/bin/node",
                   ["node", "/opt/nvm/v24/bin/openclaw", "agent", "--agent", "main", "-m", "hi"]), 0.01),
        at(ev.exec(3000, gateway, "/bin/bash", ["/bin/bash", "--noprofile", "--norc", "-c", "x"]), 0.02),
        at(ev.exec(3001, 3000, "/usr/bin/curl", ["curl", "-s", "http://example.com"]), 0.03),
        at(ev.open(3001, 3000, odd, flags=0x241), 0.04),
        at(ev.open(3001, 3000, "/etc/ld.so.cache"), 0.05),
    ])
    bench.pump(lambda b: len(b.of("sessionizer.event")) >= 3)
    (opened,) = bench.of("sessionizer.session")
    assert opened["state"] == "opened" and opened["leader_tgid"] == cli
    wrapper, curl, odd_open = bench.of("sessionizer.event")
    assert wrapper["role"] == "wrapper" and "role" not in curl          # published, tagged
    assert curl["session_id"] == odd_open["session_id"] == opened["session_id"]
    assert curl["tree_id"] > 0 and curl["shard"] == opened["shard"]
    assert [n["comm"] for n in curl["lineage"]] == ["curl", "node"]
    assert odd_open["path"] == odd                               # non-UTF-8, newline, long: intact
    # malformed messages are counted and dropped; the stage keeps going
    bench.collector.sock.send_multipart([b"collector.event", b"\xc1 not msgpack"])
    bench.collector.sock.send_multipart([b"collector.event", b"a", b"third frame"])
    bench.collector.sock.send_multipart([b"collector.event", msgpack.packb({"v": 99})])
    bench.send([{"kind": "exec", "ts_ns": 1}])                   # valid envelope, invalid event
    bench.send([at(ev.exit(cli, 1), 0.1)])
    closed = bench.closed_session()
    assert closed["session_id"] == opened["session_id"] and closed["complete"] is True
    assert closed["closed_ns"] == now + int(0.1 * 1e9) + 2_000_000_000
    # a gateway turn with no CLI: its own session, announced at shutdown
    bench.send([at(ev.exec(3100, gateway, "/usr/bin/ls", ["ls"]), 2.5)])
    bench.pump(lambda b: sum(m["state"] == "opened" for m in b.of("sessionizer.session")) == 2)
    bench.heartbeats.clear()
    bench.pump(lambda b: b.heartbeats)
    hb = bench.heartbeats[-1]
    assert hb["bus_malformed"] == 2 and hb["bus_unknown_version"] == 1
    assert hb["malformed_events"] == 1 and hb["dropped_loader_noise"] == 1
    assert "dropped_shell_wrapper" not in hb and hb["open_sessions"] == 1
    assert hb["rules_version"] and hb["reloads_applied"] == 0 and hb["last_reload_id"] == 0
    bench.proc.send_signal(signal.SIGTERM)
    bench.pump(lambda b: any(m["state"] == "shutdown" for m in b.of("sessionizer.session")))
    assert bench.proc.wait(timeout=WAIT_S) == 0
    state = json.loads((bench.directory / "state" / "sessionizer.json").read_text())
    assert state["id_reserved_until"] > closed["session_id"] + 1
    assert [s["profile"] for s in state["checkpoint"]["sessions"]] == ["openclaw-gateway"]


def test_flushed_lifecycle_for_open_sessions(bench, agents):
    ev = Events()
    gateway, cli = agents
    now = time.time_ns()
    bench.send([{**ev.root(gateway, 1, "openclaw-gateway"), "ts_ns": now},
                cli_exec(ev, cli, now),
                {**ev.open(cli, 1, "/tmp/notes.txt"), "ts_ns": now}])
    bench.pump(lambda b: any(m["state"] == "flushed" for m in b.of("sessionizer.session")), timeout_s=5)
    flushed = next(m for m in bench.of("sessionizer.session") if m["state"] == "flushed")
    assert flushed["event_count"] == 1 and flushed["closed_ns"] is None


def test_kernel_loss_and_bus_gap_mark_the_open_session_incomplete(bench, agents):
    ev = Events()
    gateway, cli = agents
    now = time.time_ns()
    bench.send([cli_exec(ev, cli, now)])
    bench.send([{**ev.loss(5), "ts_ns": now}])
    bench.collector.last_seq["collector.event"] += 3             # three messages "lost" on the bus
    bench.send([{**ev.exit(cli, 1), "ts_ns": now + 1000}])
    closed = bench.closed_session()
    assert closed["complete"] is False and closed["lost_events"] == 8


def test_reload_in_band_is_forwarded_and_a_bad_file_keeps_the_old_settings(bench, agents):
    ev = Events()
    gateway, _ = agents
    now = time.time_ns()
    bench.send([{**ev.root(gateway, 1, "openclaw-gateway"), "ts_ns": now},
                {**ev.exec(3000, gateway, "/usr/bin/curl", ["curl"]), "ts_ns": now},     # a tool
                {**ev.connect(3000, gateway, "127.0.0.1", 18000), "ts_ns": now}])   # allowed port
    bench.pump(lambda b: len(b.of("sessionizer.event")) == 2)
    doc = json.loads(bench.rules.read_text())
    doc["analysis"]["allowed_loopback_ports"] = [19000]
    bench.rules.write_text(json.dumps(doc))
    control = {"kind": "control", "command": "reload", "id": 7, "requested_ns": now}
    bench.collector.publish_now("collector.control", [control])
    bench.send([{**ev.connect(3000, gateway, "127.0.0.1", 18000), "ts_ns": now + 10},
                {**ev.connect(3000, gateway, "127.0.0.1", 19000), "ts_ns": now + 20}])
    bench.pump(lambda b: len(b.of("sessionizer.event")) == 3 and b.of("sessionizer.control"))
    assert bench.of("sessionizer.control") == [control]
    assert [e.get("port") for e in bench.of("sessionizer.event")] == [None, 18000, 19000]
    bench.rules.write_text("{ not json")
    bench.collector.publish_now("collector.control", [{**control, "id": 8}])
    bench.send([{**ev.connect(3000, gateway, "127.0.0.1", 19000), "ts_ns": now + 30}])
    bench.pump(lambda b: len(b.of("sessionizer.event")) == 4 and len(b.of("sessionizer.control")) == 2)
    assert "reload failed; keeping the previous settings" in bench.stderr()
    bench.heartbeats.clear()
    bench.pump(lambda b: b.heartbeats)
    hb = bench.heartbeats[-1]
    assert (hb["reloads_applied"], hb["reloads_rejected"], hb["last_reload_id"]) == (1, 1, 8)


def _as_older_layout(state_file: Path) -> None:
    """Rewrite the checkpoint's input positions as the stage wrote them before it used the bus's
    SequenceTracker.positions(): {topic: {epoch, seq}}."""
    doc = json.loads(state_file.read_text())
    doc["checkpoint"]["bus"] = {p["topic"]: {"epoch": p["epoch"], "seq": p["seq"]}
                                for p in doc["checkpoint"]["bus"]}
    state_file.write_text(json.dumps(doc))


@pytest.mark.parametrize("layout", ["current", "older"])
def test_restart_after_kill_restores_sessions_and_counts_what_was_missed(bench, agents, layout):
    ev = Events()
    child, cli = agents                                # both alive: the restore keeps them
    now = time.time_ns()
    bench.send([cli_exec(ev, cli, now),
                {**ev.exec(child, cli, "/usr/bin/python3", ["python3"]), "ts_ns": now + 1}])
    bench.pump(lambda b: b.of("sessionizer.event"))
    (opened,) = bench.of("sessionizer.session")
    state_file = bench.directory / "state" / "sessionizer.json"
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:                 # wait for a checkpoint holding the session
        try:
            doc = json.loads(state_file.read_text())
            if doc.get("checkpoint", {}).get("sessions") and doc["checkpoint"].get("bus"):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    else:
        raise AssertionError("no checkpoint written")
    bench.proc.kill()                                   # SIGKILL: no shutdown, no final checkpoint
    bench.proc.wait()
    positions = json.loads(state_file.read_text())["checkpoint"]["bus"]
    assert {(p["stream"], p["topic"]) for p in positions} >= {("collector", "collector.event")}
    if layout == "older":
        _as_older_layout(state_file)
    bench.send([{**ev.open(child, cli, "/tmp/missed-1"), "ts_ns": now + 2}])
    bench.send([{**ev.open(child, cli, "/tmp/missed-2"), "ts_ns": now + 3}])
    bench.got.clear()
    bench.proc = _start(bench.directory, bench.rules)
    _connect(bench)
    bench.send([{**ev.open(child, cli, "/tmp/after"), "ts_ns": now + 4},
                {**ev.exit(cli, 1), "ts_ns": now + 5}])
    bench.pump(lambda b: any(m["state"] == "closed" for m in b.of("sessionizer.session")))
    announced = bench.of("sessionizer.session")[0]              # the restart is announced at once
    assert announced["state"] == "flushed" and announced["complete"] is False
    after = bench.of("sessionizer.event")
    assert [e["session_id"] for e in after] == [opened["session_id"]] * 2   # same session resumed
    assert after[0]["depth"] == 1                                          # tracker restored
    closed = next(m for m in bench.of("sessionizer.session") if m["state"] == "closed")
    assert closed["session_id"] == opened["session_id"]
    assert closed["complete"] is False and closed["lost_events"] == 2
    assert "restored from checkpoint" in bench.stderr()
    bench.send([cli_exec(ev, cli + 10**6, now + 6)])
    bench.pump(lambda b: sum(m["state"] == "opened" for m in b.of("sessionizer.session")) == 1)
    fresh = next(m for m in bench.of("sessionizer.session") if m["state"] == "opened")
    assert fresh["session_id"] > opened["session_id"]                      # ids never reused


def test_clean_restart_continues_sessions_without_marking_them_incomplete(bench, agents):
    ev = Events()
    child, cli = agents
    now = time.time_ns()
    opened = bench.open_cli_session(ev, cli, now)
    bench.proc.send_signal(signal.SIGTERM)
    bench.pump(lambda b: any(m["state"] == "shutdown" for m in b.of("sessionizer.session")))
    assert bench.proc.wait(timeout=WAIT_S) == 0
    bench.got.clear()
    bench.proc = _start(bench.directory, bench.rules)
    _connect(bench)
    bench.send([{**ev.exec(child, cli, "/usr/bin/python3", ["python3"]), "ts_ns": now + 1},
                {**ev.exit(cli, 1), "ts_ns": now + 2}])
    bench.pump(lambda b: any(m["state"] == "closed" for m in b.of("sessionizer.session")))
    assert [e["session_id"] for e in bench.of("sessionizer.event")] == [opened["session_id"]] * 2
    closed = next(m for m in bench.of("sessionizer.session") if m["state"] == "closed")
    assert closed["session_id"] == opened["session_id"] and closed["complete"] is True
    assert "clean=True" in bench.stderr()


def test_collector_restart_marks_open_sessions_incomplete(bench, agents):
    ev = Events()
    _, cli = agents
    now = time.time_ns()
    bench.open_cli_session(ev, cli, now)
    bench.collector.epoch += 1                  # what a restarted collector looks like on the bus
    bench.collector.last_seq.clear()
    bench.send([{**ev.exit(cli, 1), "ts_ns": now + 1000}])
    closed = bench.closed_session()
    assert closed["complete"] is False
    assert "collector restarted; open sessions marked incomplete" in bench.stderr()


def _pid_that_does_not_exist() -> int:
    """Above pid_max: no process has it now, or will have it during the test."""
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 4242


@pytest.mark.parametrize("bench", [(("--no-liveness",), {}), ((), {"CASA_SESSIONIZER_LIVENESS": "0"})],
                         indirect=True, ids=["flag", "env"])
def test_replay_without_liveness_closes_a_dead_leaders_session_on_its_exit_and_grace(bench):
    """A recording replayed after its processes are gone: the leader pid is not in /proc, yet
    the session stays open until the recorded exit, and closes exactly exit + 2 s."""
    ev = Events()
    cli = _pid_that_does_not_exist()
    now = time.time_ns()
    opened = bench.open_cli_session(ev, cli, now)
    assert opened["leader_tgid"] == cli
    time.sleep(2.5)                              # past a liveness check (at start, then every 2 s)
    exit_ns = time.time_ns()
    bench.send([{**ev.open(cli, 1, "/tmp/late"), "ts_ns": exit_ns - 1000},
                {**ev.exit(cli, 1), "ts_ns": exit_ns}])
    closed = bench.closed_session()
    assert closed["session_id"] == opened["session_id"]
    assert closed["closed_ns"] == exit_ns + 2_000_000_000 and closed["event_count"] == 2
    assert "session leader gone" not in bench.stderr() and "liveness=off" in bench.stderr()



def _checkpointed_sessions(state_file: Path) -> set[int]:
    try:
        doc = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return set()
    return {s["session_id"] for s in doc.get("checkpoint", {}).get("sessions", [])}


@pytest.mark.parametrize("bench", [(("--checkpoint-interval-s", "60"), {})], indirect=True)
def test_sessions_opened_in_a_burst_are_all_checkpointed_soon(bench, agents):
    """Checkpoints triggered by new sessions are coalesced (at most one per 0.2 s), never
    dropped: the second of two sessions opened back to back is saved well before the periodic
    checkpoint (60 s here) would have saved it."""
    ev = Events()
    first, second = agents
    now = time.time_ns()
    bench.send([cli_exec(ev, first, now)])
    bench.send([cli_exec(ev, second, now + 1)])
    bench.pump(lambda b: len(b.of("sessionizer.session")) == 2)
    opened = {m["session_id"] for m in bench.of("sessionizer.session")}
    state_file = bench.directory / "state" / "sessionizer.json"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 3.0 and _checkpointed_sessions(state_file) != opened:
        time.sleep(0.02)
    assert _checkpointed_sessions(state_file) == opened
