"""The casa CLI against real bus sockets: tap, record, replay, help and LSB exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import bus
from cli.recording import RecordingError, RecordingWriter, read_recording
from cli.render import json_line
from cli.replay import collector_batches
from tests.bus.bus_samples import SAMPLE_EVENTS
from tests.harness.casa_cli import casa

CHECKOUT = Path(__file__).resolve().parents[2]

# A stand-in collector: publishes the sample events (one with a non-UTF-8 path) every 50 ms.
FAKE_COLLECTOR = r"""
import sys, time, zmq
from pathlib import Path
from bus import Publisher, bind_publisher, to_wire, from_kernel
from tests.bus.bus_samples import SAMPLE_EVENTS
ctx = zmq.Context()
pub = Publisher(bind_publisher(ctx, "collector", Path(sys.argv[1])), "collector")
odd = {**SAMPLE_EVENTS["open"], "path": to_wire(from_kernel(b"/tmp/\xff\nx"))}
rounds = int(sys.argv[2])
for i in range(rounds):
    pub.publish_now("collector.event", [SAMPLE_EVENTS["exec"], odd])
    pub.heartbeat({"round": i})
    time.sleep(0.05)
time.sleep(30)
"""


@pytest.fixture
def bus_dir() -> Iterator[Path]:
    d = Path("/tmp") / f"casa-cli-test-{uuid.uuid4().hex[:8]}"
    d.mkdir(mode=0o770)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _start_fake_collector(bus_dir: Path, rounds: int = 100000) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", FAKE_COLLECTOR, str(bus_dir), str(rounds)], cwd=CHECKOUT)
    deadline = time.monotonic() + 10
    while not (bus_dir / "collector.sock").exists():
        assert time.monotonic() < deadline, "fake collector did not bind"
        time.sleep(0.05)
    return proc


@contextmanager
def fake_collector(bus_dir: Path, rounds: int = 100000) -> Iterator[subprocess.Popen]:
    """A fake collector publishing on ``bus_dir`` for the block, killed after it."""
    proc = _start_fake_collector(bus_dir, rounds)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_help_and_exit_codes() -> None:
    assert casa("help").returncode == 0
    out = casa("help", "tap")
    assert out.returncode == 0 and "examples:" in out.stdout
    assert casa("help", "nonsense").returncode == 2
    assert casa("nonsense").returncode == 2
    assert casa().returncode == 2
    assert casa("tap", "-n", "-1").returncode == 2
    assert casa("replay", "x", "--speed", "0").returncode == 2


def test_tap_and_record_say_not_running(bus_dir: Path) -> None:
    out = casa("tap", "--bus-dir", str(bus_dir), "-d", "0.2")
    assert out.returncode == 3 and "no live stream" in out.stderr
    out = casa("record", str(bus_dir / "x.casarec"), "--bus-dir", str(bus_dir), "-d", "0.2")
    assert out.returncode == 3


def test_tap_prints_one_json_line_per_event(bus_dir: Path) -> None:
    with fake_collector(bus_dir):
        out = casa("tap", "--bus-dir", str(bus_dir), "--topic", "collector.event", "-n", "4")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4
    rows = [json.loads(line) for line in lines]
    assert {r["topic"] for r in rows} == {"collector.event"}
    assert {r["stream"] for r in rows} == {"collector"}
    assert all(isinstance(r["seq"], int) for r in rows)
    opens = [r["event"] for r in rows if r["event"]["kind"] == "open"]
    assert opens and bus.to_bytes(opens[0]["path"]) == b"/tmp/\xff\nx"   # lossless, one line
    assert "\\udcff" in out.stdout
    assert "Tapping collector" in out.stderr and "lost_messages=0" in out.stderr


def test_tap_shows_heartbeats_when_asked(bus_dir: Path) -> None:
    with fake_collector(bus_dir):
        out = casa("tap", "--bus-dir", str(bus_dir), "--topic", "collector.heartbeat", "-n", "1")
    row = json.loads(out.stdout)
    assert row["topic"] == "collector.heartbeat" and "round" in row["counters"]


def test_record_then_replay_feeds_the_same_events(bus_dir: Path, tmp_path: Path) -> None:
    rec = tmp_path / "run.casarec"
    with fake_collector(bus_dir, rounds=1000):
        out = casa("record", str(rec), "--bus-dir", str(bus_dir), "--stream", "collector", "-n", "12")
    assert out.returncode == 0, out.stderr
    header, messages = read_recording(rec)
    assert header["streams"] == ["collector"]
    batches, malformed = collector_batches(messages)
    assert malformed == 0 and batches
    expected = [e for b in batches for e in b.events]
    (bus_dir / "collector.sock").unlink()
    replay = subprocess.Popen([sys.executable, "-m", "cli", "replay", str(rec), "--bus-dir", str(bus_dir),
                               "--fast", "--linger", "0.5"], cwd=CHECKOUT, stderr=subprocess.PIPE, text=True)
    try:
        while not (bus_dir / "collector.sock").exists():
            time.sleep(0.02)
        tap = casa("tap", "--bus-dir", str(bus_dir), "--topic", "collector.event", "-n", str(len(expected)), "-d", "20")
    finally:
        err = replay.communicate(timeout=30)[1]
    assert replay.returncode == 0, err
    rows = [json.loads(line) for line in tap.stdout.splitlines()]
    assert [r["event"]["kind"] for r in rows] == [e["kind"] for e in expected]
    assert rows[0]["seq"] == 1                       # fresh numbering, not the recorded seq
    assert f"{len(expected)} events" in err


def test_recording_rejects_other_files(tmp_path: Path) -> None:
    bogus = tmp_path / "x.casarec"
    bogus.write_bytes(b"\x93\x01\x02\x03")
    with pytest.raises(RecordingError, match="not a CASA recording"):
        read_recording(bogus)
    with pytest.raises(RecordingError, match="cannot open"):
        read_recording(tmp_path / "missing")
    out = casa("replay", str(bogus))
    assert out.returncode == 1 and "not a CASA recording" in out.stderr


def test_recording_tolerates_truncated_tail(tmp_path: Path) -> None:
    path = tmp_path / "cut.casarec"
    with open(path, "wb") as fh:
        w = RecordingWriter(fh, ["collector"], [""])
        w.write_header()
        env = bus.Envelope("collector.event", "collector", 1, 1, 1, [SAMPLE_EVENTS["exit"]])
        w.write(bus.pack(env), recv_ns=5)
        w.write(bus.pack(env), recv_ns=6)
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    _, messages = read_recording(path)
    assert [m.recv_ns for m in messages] == [5]


def test_json_line_is_single_line_and_reversible() -> None:
    text = bus.from_kernel(b"a\nb\xfe\xe9t\xc3\xa9")
    line = json_line({"path": text, "raw": b"\xff", "argv": [b"x\xff"]})
    assert "\n" not in line
    back = json.loads(line)
    assert bus.to_bytes(back["path"]) == b"a\nb\xfe\xe9t\xc3\xa9"
    assert bus.to_bytes(back["raw"]) == b"\xff"
    assert "é" in line                               # valid UTF-8 stays readable


def test_rules_check_is_wired(tmp_path: Path) -> None:
    ok = casa("rules", "check", str(CHECKOUT / "rules.json"))
    assert ok.returncode == 0 and "OK" in ok.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{bad")
    out = casa("rules", "check", str(bad))
    assert out.returncode == 1 and "not valid JSON" in out.stderr
    assert casa("help", "rules", "check").returncode == 0
    short = casa("help", "rules")                     # the first word of a two-word verb is enough
    assert short.returncode == 0 and "unknown verb" not in short.stderr and "usage:" in short.stdout


@pytest.mark.parametrize("verb", [["tap"], ["record", "REC"]])
def test_ctrl_c_ends_cleanly(bus_dir: Path, tmp_path: Path, verb: list[str]) -> None:
    proc = _start_fake_collector(bus_dir)
    try:
        args = [str(tmp_path / "x.casarec") if a == "REC" else a for a in verb]
        out = subprocess.run(["timeout", "--preserve-status", "-s", "INT", "2", sys.executable, "-m", "cli", *args,
                              "--bus-dir", str(bus_dir)], capture_output=True, text=True, timeout=30, cwd=CHECKOUT)
    finally:
        proc.kill()
        proc.wait()
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    if verb[0] == "record":
        _, messages = read_recording(tmp_path / "x.casarec")
        assert len(list(messages)) > 0


def test_tap_says_once_it_has_heard_from_every_stream(bus_dir: Path) -> None:
    """The readiness signal scripts wait on instead of sleeping: after it, nothing is missed."""
    proc = _start_fake_collector(bus_dir)
    try:
        tap = subprocess.Popen([sys.executable, "-m", "cli", "tap", "--bus-dir", str(bus_dir), "--topic",
                                "collector.event", "-n", "2", "-d", "20"], cwd=CHECKOUT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = tap.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert "casa tap: subscribed | every stream heard from" in err, err
    assert len(out.splitlines()) == 2 and all('"collector.event"' in line for line in out.splitlines())
