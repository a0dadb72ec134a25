"""The bus over REAL ZeroMQ ipc sockets: gaps, tail loss, restarts, the high-water mark, permissions.

Loss is produced for real: a tiny SNDHWM on the XPUB and a subscriber that does not read make
``send`` raise ``zmq.Again``; the publisher counts those messages as undelivered, and the
subscriber must count exactly as many lost messages from the sequence numbers and heartbeats.
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from bus import Publisher, Subscriber, bind_publisher, connect_subscriber
from bus.endpoints import endpoint
from tests.bus.bus_samples import SAMPLE_EVENTS

TOPIC = "collector.event"


@pytest.fixture
def bus_dir() -> Iterator[Path]:
    """A bus directory like /run/casa: root:casa 0770, reachable by other users through /tmp."""
    d = Path("/tmp") / f"casa-bus-test-{uuid.uuid4().hex[:8]}"
    d.mkdir(mode=0o770)
    os.chmod(d, 0o770)
    if os.geteuid() == 0:
        os.chown(d, 0, grp.getgrnam("casa").gr_gid)
    yield d
    shutil.rmtree(d, ignore_errors=True)


class TrackingContext(zmq.Context):
    """Keeps every socket alive until teardown closes it (no ResourceWarning from a GC'd socket)."""

    opened: list[zmq.Socket] | None = None    # declared here: pyzmq treats unknown attrs as options

    def __init__(self) -> None:
        super().__init__()
        self.opened = []

    def socket(self, *args, **kwargs) -> zmq.Socket:   # type: ignore[override]
        s = super().socket(*args, **kwargs)
        assert self.opened is not None
        self.opened.append(s)
        return s


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = TrackingContext()
    yield c
    for s in c.opened or []:
        s.close(0)
    c.term()


def _wait_subscribed(xpub: zmq.Socket, timeout_s: float = 5.0) -> None:
    """XPUB delivers subscription frames: reading one proves the subscriber is connected."""
    if not xpub.poll(int(timeout_s * 1000)):
        raise AssertionError("subscriber never subscribed")
    while xpub.poll(50):
        xpub.recv()


def _drain(sub: Subscriber, sock: zmq.Socket, quiet_s: float = 0.3) -> list:
    got = []
    deadline = time.monotonic() + quiet_s
    while time.monotonic() < deadline:
        if sock.poll(50):
            got += sub.receive()
            deadline = time.monotonic() + quiet_s
    return got


def _pair(ctx: zmq.Context, bus_dir: Path, *, rcvhwm: int | None = None):
    xpub = bind_publisher(ctx, "collector", bus_dir)
    sub_sock = ctx.socket(zmq.SUB)
    sub_sock.setsockopt(zmq.LINGER, 0)
    if rcvhwm is not None:
        sub_sock.setsockopt(zmq.RCVHWM, rcvhwm)
        sub_sock.setsockopt(zmq.RCVBUF, 4096)
    topics = Subscriber.subscriptions([TOPIC])
    for t in topics:
        sub_sock.setsockopt(zmq.SUBSCRIBE, t.encode())
    sub_sock.connect(endpoint("collector", bus_dir))
    _wait_subscribed(xpub)
    return xpub, sub_sock, Subscriber(sub_sock, topics)


def test_batches_arrive_in_order_with_consecutive_seq(ctx: zmq.Context, bus_dir: Path) -> None:
    xpub, sock, sub = _pair(ctx, bus_dir)
    pub = Publisher(xpub, "collector", batch_max=64)
    for i in range(200):
        pub.publish(TOPIC, {**SAMPLE_EVENTS["exit"], "tgid": i})
    pub.flush()
    envs = _drain(sub, sock)
    assert [e.seq for e in envs] == [1, 2, 3, 4]
    assert [len(e.events) for e in envs] == [64, 64, 64, 8]
    assert [ev["tgid"] for e in envs for ev in e.events] == list(range(200))
    assert sub.counters.lost_messages == 0


def test_high_water_mark_loss_is_counted_exactly(ctx: zmq.Context, bus_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bus.endpoints.SNDHWM_MESSAGES", 4)   # read by bind_publisher at bind time
    xpub, sock, sub = _pair(ctx, bus_dir, rcvhwm=4)
    pub = Publisher(xpub, "collector", batch_max=1)
    big = {**SAMPLE_EVENTS["open"], "path": "/x" * 2000}
    for _ in range(3000):
        pub.publish(TOPIC, big)
    assert pub.undelivered_messages > 0, "the high-water mark was never reached"
    _drain(sub, sock)
    pub.heartbeat()                           # announces last_seq: reveals loss at the tail
    _drain(sub, sock)
    assert pub.sent_messages - 1 + pub.undelivered_messages == 3000    # minus the heartbeat
    assert pub.undelivered_events == pub.undelivered_messages
    assert sub.counters.received_messages == pub.sent_messages       # heartbeat included in both
    assert sub.counters.lost_messages == pub.undelivered_messages


def test_heartbeat_reveals_tail_loss(ctx: zmq.Context, bus_dir: Path) -> None:
    xpub, sock, sub = _pair(ctx, bus_dir)
    pub = Publisher(xpub, "collector")
    pub.publish_now(TOPIC, [SAMPLE_EVENTS["exit"]])
    _drain(sub, sock)
    pub.last_seq[TOPIC] += 3                  # three messages that never left the publisher
    lost: list[tuple[str, str, int]] = []
    sub.on_loss = lambda stream, topic, n: lost.append((stream, topic, n))
    pub.heartbeat({"reloads_applied": 0})
    envs = _drain(sub, sock)
    assert envs[-1].topic == "collector.heartbeat"
    assert envs[-1].counters["reloads_applied"] == 0
    assert envs[-1].counters["pid"] == os.getpid()
    assert lost == [("collector", "collector.heartbeat", 3)]
    assert sub.counters.lost_messages == 3


def test_sequence_gap_counted(ctx: zmq.Context, bus_dir: Path) -> None:
    xpub, sock, sub = _pair(ctx, bus_dir)
    pub = Publisher(xpub, "collector")
    pub.publish_now(TOPIC, [SAMPLE_EVENTS["exit"]])
    pub.last_seq[TOPIC] += 2
    pub.publish_now(TOPIC, [SAMPLE_EVENTS["exit"]])
    envs = _drain(sub, sock)
    assert [e.seq for e in envs] == [1, 4]
    assert sub.counters.lost_messages == 2


PUBLISHER = r"""
import sys, time, zmq
from pathlib import Path
from bus import Publisher, bind_publisher
ctx = zmq.Context()
xpub = bind_publisher(ctx, "collector", Path(sys.argv[1]))
xpub.poll(10000)                      # a subscription frame: the test's SUB is connected
pub = Publisher(xpub, "collector")
for _ in range(int(sys.argv[2])):
    pub.publish_now("collector.event", [{"kind": "exit"}])
time.sleep(60)
"""


def test_publisher_restart_is_a_new_epoch_not_a_gap(ctx: zmq.Context, bus_dir: Path) -> None:
    topics = Subscriber.subscriptions([TOPIC])
    sock = connect_subscriber(ctx, ["collector"], topics, bus_dir)
    sub = Subscriber(sock, topics)
    runs = []
    for count in (5, 3):                      # first run, SIGKILL, restarted run
        proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(bus_dir), str(count)])
        try:
            envs: list = []
            deadline = time.monotonic() + 10
            while len(envs) < count and time.monotonic() < deadline:
                if sock.poll(100):
                    envs += sub.receive()
            runs.append(envs)
        finally:
            proc.kill()
            proc.wait()
    assert [e.seq for e in runs[0]] == [1, 2, 3, 4, 5]
    assert [e.seq for e in runs[1]] == [1, 2, 3]
    assert runs[1][0].epoch > runs[0][0].epoch
    assert sub.counters.publisher_restarts == 1
    assert sub.counters.lost_messages == 0


def test_lagging_message_is_flagged_not_dropped(ctx: zmq.Context, bus_dir: Path) -> None:
    xpub, sock, sub = _pair(ctx, bus_dir)
    pub = Publisher(xpub, "collector", clock=lambda: time.time_ns() - 10_000_000_000)
    pub.publish_now(TOPIC, [SAMPLE_EVENTS["exit"]])
    envs = _drain(sub, sock)
    assert len(envs) == 1 and sub.counters.lagging_messages == 1


def test_connect_subscriber_joins_several_streams(ctx: zmq.Context, bus_dir: Path) -> None:
    a = bind_publisher(ctx, "analyzer-0", bus_dir)
    b = bind_publisher(ctx, "analyzer-1", bus_dir)
    sock = connect_subscriber(ctx, ["analyzer-0", "analyzer-1"], ["analyzer.decision"], bus_dir)
    _wait_subscribed(a)
    _wait_subscribed(b)
    Publisher(a, "analyzer", "analyzer-0").publish_now("analyzer.decision", [{"kind": "decision"}])
    Publisher(b, "analyzer", "analyzer-1").publish_now("analyzer.decision", [{"kind": "decision"}])
    sub = Subscriber(sock, ["analyzer.decision"])
    assert sorted(e.stream for e in _drain(sub, sock)) == ["analyzer-0", "analyzer-1"]


@pytest.mark.root
def test_socket_is_0660_root_casa(ctx: zmq.Context, bus_dir: Path) -> None:
    bind_publisher(ctx, "collector", bus_dir)
    st = (bus_dir / "collector.sock").stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("casa").gr_gid)


PROBE = r"""
import socket, sys, time, zmq
path, mode = sys.argv[1], sys.argv[2]
if mode == "raw":
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as exc:
        print("denied", exc.errno); sys.exit(0)
    print("connected"); sys.exit(0)
if mode == "bind":
    ctx = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    try:
        sock.bind("ipc://" + path)
    except zmq.ZMQError as exc:
        print("denied", exc.errno); sys.exit(0)
    print("bound"); sys.exit(0)
if mode == "sub":
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect("ipc://" + path)
    print("received" if sock.poll(3000) else "nothing"); sys.exit(0)
"""


def _probe_as(user: str, path: Path, mode: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE, str(path), mode], user=user, group=user if user == "casa" else "nogroup",
                         extra_groups=[], capture_output=True, text=True, timeout=20, cwd="/")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.root
def test_unprivileged_user_cannot_read_or_publish(ctx: zmq.Context, bus_dir: Path) -> None:
    xpub = bind_publisher(ctx, "collector", bus_dir)
    pub = Publisher(xpub, "collector")
    path = bus_dir / "collector.sock"
    proc = subprocess.Popen([sys.executable, "-c", PROBE, str(path), "sub"], user="nobody",
                            group="nogroup", extra_groups=[], stdout=subprocess.PIPE, text=True, cwd="/")
    deadline = time.monotonic() + 3.5
    while proc.poll() is None and time.monotonic() < deadline:
        pub.publish_now(TOPIC, [SAMPLE_EVENTS["exit"]])
        time.sleep(0.05)
    assert proc.communicate(timeout=10)[0].strip() == "nothing"
    assert _probe_as("nobody", path, "raw") == "denied 13"          # EACCES on connect(2)
    assert _probe_as("nobody", bus_dir / "fake.sock", "bind").startswith("denied")
    assert not (bus_dir / "fake.sock").exists()
    # Control: the casa group is let in, so the denial above is the permissions' doing.
    assert _probe_as("casa", path, "raw") == "connected"
