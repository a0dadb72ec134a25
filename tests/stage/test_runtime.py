"""stage.runtime and stage.flags: signals only set flags, the loop acts on them; heartbeat and
checkpoint cadence; the stop's order and its stopped line. Unit tests with a fake clock and a
fake source; tests/stage/test_new_sink.py runs a stage on the real bus."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from bus.publisher import Publisher
from stage import runtime as runtime_module
from stage.flags import Flags
from stage.runtime import Hooks, Runtime


class Sock:
    """Captures what the publisher sends."""

    def __init__(self) -> None:
        self.sent: list[list[bytes]] = []
        self.closed_with: int | None = None

    def send_multipart(self, frames: list[bytes], flags: int = 0) -> None:
        self.sent.append(frames)

    def close(self, linger: int = 0) -> None:
        self.closed_with = linger

    def heartbeats(self) -> list[dict[str, Any]]:
        return [msgpack.unpackb(f[1]) for f in self.sent if f[0].endswith(b".heartbeat")]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Source:
    """Each poll advances the clock by ``step`` and runs the next scripted action."""

    def __init__(self, clock: Clock, step: float, actions: dict[int, Any], passes: int,
                 flags: Flags) -> None:
        self.clock, self.step, self.actions, self.passes, self.flags = clock, step, actions, passes, flags
        self.polls = 0
        self.closed = False
        self.liveness_checks = 0

    def poll(self, timeout_ms: int) -> int:
        self.polls += 1
        self.clock.now += self.step
        action = self.actions.get(self.polls)
        if action is not None:
            action()
        if self.polls >= self.passes:
            self.flags.stop = True
        return 3

    def before_heartbeat(self) -> None:
        self.liveness_checks += 1

    def close(self) -> None:
        self.closed = True


class Recorder(Hooks):
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls: list[tuple[str, Any]] = []
        self.want = False
        self.n = 0

    def each_pass(self, read: int) -> None:
        self.n += read

    def reload(self) -> None:
        self.calls.append(("reload", self.clock.now))

    def on_heartbeat(self) -> None:
        self.calls.append(("on_heartbeat", self.clock.now))

    def counters(self) -> dict[str, int]:
        return {"handled": self.n}

    def checkpoint_wanted(self) -> bool:
        return self.want

    def checkpoint(self, clean: bool) -> None:
        self.want = False
        self.calls.append(("checkpoint", clean))

    def stopping(self) -> None:
        self.calls.append(("stopping", None))


@pytest.fixture
def handlers() -> Iterator[None]:
    """Put the pytest process's signal handlers back after a test installs flags."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.fixture(autouse=True)
def no_gc_tuning(monkeypatch: pytest.MonkeyPatch) -> None:
    """tune_gc would freeze this pytest process's heap (tests/stage/test_memory.py covers it)."""
    monkeypatch.setattr(runtime_module, "tune_gc", lambda: None)


def build(passes: int, step: float, actions: dict[int, Any] | None = None, **kw: Any
          ) -> tuple[Runtime, Recorder, Sock, Source]:
    clock, flags, sock = Clock(), Flags(), Sock()
    pub = Publisher(sock, "sinks", "sinks-test", heartbeat_interval_s=1.0)
    hooks = Recorder(clock)
    source = Source(clock, step, actions or {}, passes, flags)
    rt = Runtime("sink", hooks, source, pub, ident={"stream": "sinks-test"}, running={"x": 1},
                 flags=flags, clock=clock, **kw)
    return rt, hooks, sock, source


def test_signals_only_set_flags(handlers: None) -> None:
    flags = Flags().install()
    os.kill(os.getpid(), signal.SIGHUP)
    assert flags.reload and not flags.stop
    os.kill(os.getpid(), signal.SIGTERM)
    assert flags.stop
    flags.stop = False
    os.kill(os.getpid(), signal.SIGINT)
    assert flags.stop


def test_without_reload_sighup_is_left_alone(handlers: None) -> None:
    """casa tap and casa record: SIGHUP keeps whatever it was (by default it ends them)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    flags = Flags().install(reload=False)
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) == flags.on_stop


def test_a_real_sigterm_ends_the_loop_after_the_pass_with_the_stopped_line(handlers: None, caplog) -> None:
    rt, hooks, sock, source = build(passes=1000, step=0.01,
                                    actions={5: lambda: os.kill(os.getpid(), signal.SIGHUP),
                                             9: lambda: os.kill(os.getpid(), signal.SIGTERM)})
    with caplog.at_level(logging.INFO, logger="casa.stage"):
        assert rt.run() == 0
    assert source.polls == 9 and source.closed and sock.closed_with == 1000
    assert [c for c, _ in hooks.calls].count("reload") == 1
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "sink running | stream=sinks-test x=1"
    assert lines[-1] == (f"sink stopped | stream=sinks-test sent_events=0 undelivered_events=0 "
                         f"undelivered_messages=0 unpublishable=0 pid={os.getpid()} handled=27")


def test_heartbeat_cadence_and_the_last_heartbeat(handlers: None) -> None:
    rt, hooks, sock, source = build(passes=50, step=0.1)    # 5 s of passes, one heartbeat a second
    rt.run()
    beats = sock.heartbeats()
    assert 5 <= len(beats) <= 7                              # 5-6 due, plus the last one at the stop
    assert beats[-1]["counters"]["handled"] == 150 and beats[-1]["counters"]["unpublishable"] == 0
    assert [c for c, _ in hooks.calls].count("on_heartbeat") == len(beats) - 1   # not for the last
    assert source.liveness_checks == len(beats) - 1          # upstream liveness before each beat


def test_checkpoint_cadence_early_requests_and_the_clean_one_last(handlers: None) -> None:
    rt, hooks, _, source = build(passes=100, step=0.1, checkpoint_s=3.0, checkpoint_min_gap_s=1.0)
    for at in (12, 13, 14):                                  # wanted three passes in a row
        source.actions[at] = lambda: setattr(hooks, "want", True)
    rt.run()
    ckpts = [c for c in hooks.calls if c[0] in ("checkpoint", "stopping")]
    assert ckpts[-2:] == [("stopping", None), ("checkpoint", True)]
    # 10 s of passes: the first pass (0.1 s); wanted at 1.2 s (served at once, after the 1 s gap);
    # wanted again at 1.3 s, served when the gap ends (2.2 s); then every 3 s: 5.2 s, 8.2 s
    assert ckpts.count(("checkpoint", False)) == 5


def test_no_checkpoint_cadence_still_gets_the_clean_checkpoint(handlers: None) -> None:
    rt, hooks, _, _ = build(passes=30, step=0.1)
    rt.run()
    assert [c for c in hooks.calls if c[0] == "checkpoint"] == [("checkpoint", True)]


def test_a_failing_pass_still_finishes(handlers: None, caplog) -> None:
    def boom() -> None:
        raise RuntimeError("a bug in the stage")
    rt, hooks, sock, source = build(passes=100, step=0.1, actions={3: boom})
    with caplog.at_level(logging.INFO, logger="casa.stage"), pytest.raises(RuntimeError):
        rt.run()
    assert ("checkpoint", True) in hooks.calls and source.closed and sock.closed_with is not None
    assert "sink stopped | stream=sinks-test" in caplog.text
