"""LogFile faults: unwritable directory, full disk, rotation, concurrent writers, permissions."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from sinks import jsonl
from sinks.jsonl import LogFile


class Clock:
    """A settable monotonic clock, so retries happen when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def line(i: int, pad: int = 0) -> bytes:
    return (json.dumps({"i": i, "pad": "x" * pad}) + "\n").encode()


def read_ids(*paths: Path) -> list[int]:
    out = []
    for p in paths:
        for raw in p.read_bytes().splitlines():
            out.append(json.loads(raw)["i"])           # a torn line would fail here
    return out


def test_creates_directories_and_file_mode_0640(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        f = LogFile(tmp_path / "a" / "b" / "events.log")
        f.append(line(1))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(f.path).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(f.path.parent).st_mode) == 0o750
    assert read_ids(f.path) == [1] and f.counters.written == 1


def test_existing_wider_file_is_narrowed_and_appended_not_truncated(tmp_path: Path) -> None:
    p = tmp_path / "e.log"
    p.write_bytes(line(0))
    os.chmod(p, 0o666)
    f = LogFile(p)
    f.append(line(1))
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o640 and read_ids(p) == [0, 1]


def test_unwritable_directory_keeps_records_and_writes_them_later(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log directory should be")   # fails even for root
    clock = Clock()
    f = LogFile(blocker / "events.log", clock=clock)
    with caplog.at_level(logging.ERROR, "casa.sinks"):
        for i in range(5):
            f.append(line(i))
    assert f.backlog == 5 and f.counters.written == 0 and f.counters.write_errors == 1
    assert "cannot write log file; records kept and retried" in caplog.text
    assert f"path={blocker / 'events.log'}" in caplog.text
    blocker.unlink()                                  # the operator fixes it
    f.append(line(5))                                 # before the retry time: still queued
    assert f.backlog == 6
    clock.now += jsonl.RETRY_INTERVAL_S
    f.drain()
    assert f.backlog == 0 and read_ids(blocker / "events.log") == [0, 1, 2, 3, 4, 5]
    assert f.counters.lost == 0


def test_full_disk_bounds_the_backlog_and_counts_the_loss(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    size = len(line(0))
    f = LogFile(Path("/dev/full"), backlog_max_bytes=10 * size, clock=clock)   # every write: ENOSPC
    with caplog.at_level(logging.ERROR, "casa.sinks"):
        for i in range(25):
            f.append(line(i))
            clock.now += jsonl.RETRY_INTERVAL_S       # retried every time, still failing
    assert f.backlog == 10 and f.counters.lost == 15
    assert "log backlog full; dropping records" in caplog.text
    assert "No space left" in caplog.text or not os.access("/dev/full", os.W_OK)
    real = tmp_path / "real.log"
    real.touch()
    f.path = real                                     # space is back (a different inode)
    clock.now += 1
    f.drain()
    assert read_ids(real) == list(range(10)) and f.counters.written == 10


def test_rotation_by_rename_reopens_without_loss(tmp_path: Path) -> None:
    clock = Clock()
    p = tmp_path / "events.log"
    f = LogFile(p, clock=clock)
    for i in range(10):
        f.append(line(i))
    p.rename(tmp_path / "events.log.1")               # logrotate: rename, then the writer recreates
    f.append(line(10))                                # within ROTATION_CHECK_S: lands in the old file
    clock.now += jsonl.ROTATION_CHECK_S
    for i in range(11, 20):
        f.append(line(i))
    assert sorted(read_ids(tmp_path / "events.log.1", p)) == list(range(20))
    assert read_ids(p) == list(range(11, 20)) and f.counters.reopens == 1


def test_reopen_on_request_follows_a_deleted_file(tmp_path: Path) -> None:
    p = tmp_path / "sessions.log"
    f = LogFile(p)
    f.append(line(1))
    p.unlink()
    f.reopen()                                        # SIGHUP
    f.append(line(2))
    assert read_ids(p) == [2]


def _writer(path: str, wid: int, n: int) -> None:
    f = LogFile(Path(path))
    for i in range(n):
        f.append(line(wid * 100_000 + i, pad=3000 + (i % 7) * 500))
    f.close()


def _start_writers(p: Path, writers: int, lines_each: int) -> list[multiprocessing.process.BaseProcess]:
    """``writers`` forked processes, each appending ``lines_each`` lines of its own to ``p``."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(p), w, lines_each)) for w in range(writers)]
    for proc in procs:
        proc.start()
    return procs


def _join_writers(procs: list[multiprocessing.process.BaseProcess]) -> None:
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0


def test_concurrent_writers_never_tear_lines(tmp_path: Path) -> None:
    p = tmp_path / "events.log"
    _join_writers(_start_writers(p, 4, 400))
    ids = read_ids(p)
    assert len(ids) == 1600 and len(set(ids)) == 1600
    for w in range(4):                                # each writer's order is kept
        mine = [i for i in ids if i // 100_000 == w]
        assert mine == sorted(mine)


def test_concurrent_writers_across_rotation(tmp_path: Path) -> None:
    p = tmp_path / "events.log"
    procs = _start_writers(p, 2, 3000)
    rotated = []
    for k in range(5):
        import time
        time.sleep(0.05)
        if p.exists():
            dest = tmp_path / f"events.log.{k}"
            p.rename(dest)
            rotated.append(dest)
    _join_writers(procs)
    ids = read_ids(*rotated, *([p] if p.exists() else []))
    assert sorted(ids) == sorted(w * 100_000 + i for w in range(2) for i in range(3000))


@pytest.fixture
def tiny_fs(tmp_path: Path):
    """A real 256 KiB tmpfs, so the disk really fills up (short writes included)."""
    import subprocess
    d = tmp_path / "tiny"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_really_full_disk_short_write_is_completed_not_torn(tiny_fs: Path) -> None:
    filler = tiny_fs / "filler"
    with open(filler, "wb") as fh:
        try:
            fh.write(b"\0" * (200 * 1024))
        except OSError:
            pass
    clock = Clock()
    f = LogFile(tiny_fs / "events.log", clock=clock)
    for i in range(120):
        f.append(line(i, pad=1000))
    assert f.counters.write_errors >= 1 and f.backlog > 0 and f.counters.lost == 0
    assert not (tiny_fs / "events.log").read_bytes().endswith(b"\n")   # a real short write happened
    written_before = f.counters.written
    filler.unlink()                                   # space comes back
    clock.now += jsonl.RETRY_INTERVAL_S
    f.drain()
    assert f.backlog == 0 and f.counters.written == 120 > written_before
    assert read_ids(tiny_fs / "events.log") == list(range(120))   # every line whole, in order


def test_extend_queues_a_batch_and_counts_loss_line_by_line_at_the_bound(tmp_path: Path) -> None:
    """extend (the events batch path) keeps append's bound: lines that fit are kept, in order."""
    size = len(line(0))
    f = LogFile(Path("/dev/full"), backlog_max_bytes=10 * size, clock=Clock())   # nothing drains
    f.extend([line(i) for i in range(4)])             # fits whole: the one-call path
    f.extend([line(i) for i in range(4, 16)])         # crosses the bound: 6 kept, 6 lost
    assert f.backlog == 10 and f.counters.lost == 6
    real = tmp_path / "real.log"
    f.path = real
    f.drain()
    assert read_ids(real) == list(range(10)) and f.counters.written == 10 and f.backlog == 0


def test_backlog_larger_than_one_chunk_is_written_in_whole_line_chunks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past WRITE_CHUNK_BYTES the per-chunk path runs: several writes, each of whole lines."""
    writes: list[bytes] = []
    real_write = os.write

    def recording_write(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return real_write(fd, data)
    monkeypatch.setattr(jsonl.os, "write", recording_write)
    f = LogFile(tmp_path / "events.log")
    f.extend([line(i, pad=200) for i in range(1000)])  # ~220 kB
    f.drain()
    assert len(writes) > 1 and all(w.endswith(b"\n") and len(w) <= jsonl.WRITE_CHUNK_BYTES
                                   for w in writes)
    assert read_ids(tmp_path / "events.log") == list(range(1000))
    assert f.counters.written == 1000 and f.backlog == 0


def test_a_symlink_at_the_log_path_is_not_followed(tmp_path: Path) -> None:
    """Whoever planted it (only root or casa can write the log directory) chose where records go:
    the writer refuses (O_NOFOLLOW), keeps the records and says why."""
    target = tmp_path / "elsewhere"
    target.write_bytes(b"")
    link = tmp_path / "events.log"
    link.symlink_to(target)
    f = LogFile(link, clock=Clock())
    f.append(line(0))
    assert f.backlog == 1 and f.counters.write_errors == 1 and target.read_bytes() == b""
