"""bus.background over real ZeroMQ ipc: a thread hands every envelope to the callback with its
arrival time, gaps reach on_loss, and stop() closes the socket so the publisher sees it leave."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import zmq

from bus import Envelope, Publisher, bind_publisher
from bus.background import BackgroundSubscriber

TOPIC = "collector.event"


def _wait(cond, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


def _publisher(tmp_path: Path) -> tuple[zmq.Socket, Publisher]:
    sock = bind_publisher(zmq.Context.instance(), "collector", tmp_path)
    return sock, Publisher(sock, "collector")


def test_every_envelope_reaches_the_callback_on_the_thread_with_its_arrival_time(tmp_path: Path) -> None:
    sock, pub = _publisher(tmp_path)
    got: list[tuple[Envelope, int, str]] = []
    tap = BackgroundSubscriber(tmp_path, ["collector"], [TOPIC],
                               lambda env, ns: got.append((env, ns, threading.current_thread().name)),
                               name="test-tap").start()
    try:
        assert _wait(lambda: sock.poll(10) and sock.recv()[:1] == b"\x01")      # subscribed
        before = time.time_ns()
        for i in range(3):
            pub.publish_now(TOPIC, [{"n": i}])
        pub.heartbeat()
        assert _wait(lambda: len(got) == 4)
        events = [env.events[0]["n"] for env, _, _ in got if env.topic == TOPIC]
        assert events == [0, 1, 2]                                   # heartbeats come along
        assert all(ns >= before and name == "test-tap" for _, ns, name in got)
    finally:
        tap.stop()
        sock.close(0)


def test_a_gap_reaches_on_loss_and_stop_lets_go_of_the_socket(tmp_path: Path) -> None:
    sock, pub = _publisher(tmp_path)
    lost: list[int] = []
    tap = BackgroundSubscriber(tmp_path, ["collector"], [TOPIC], lambda env, ns: None,
                               on_loss=lambda stream, topic, n: lost.append(n)).start()
    try:
        assert _wait(lambda: sock.poll(10) and sock.recv()[:1] == b"\x01")
        pub.publish_now(TOPIC, [{"n": 0}])
        pub.last_seq[TOPIC] += 2                 # two messages the subscriber never sees
        pub.publish_now(TOPIC, [{"n": 3}])
        assert _wait(lambda: sum(lost) == 2)
    finally:
        tap.stop()
    assert _wait(lambda: sock.poll(10) and sock.recv()[:1] == b"\x00")          # unsubscribed: closed
    sock.close(0)
