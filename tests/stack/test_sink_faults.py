"""Sink faults under the real stack: a full disk, an unwritable log directory, a trace receiver
that accepts and never answers. Each is bounded, counted and shown by `casa status`, and the
other sinks and stages keep running; a sink killed in the middle of it counts what died with it.

The JSONL records live on a 384 KiB tmpfs with a 128 KiB backlog bound per file (so the bound is
reached in seconds); supervisord's and the stages' own logs are elsewhere (/var/log/casa-root in
production), so a full records disk never silences them.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.http_servers import HangingServer
from tests.stack.stack import Stack

pytestmark = [pytest.mark.root, pytest.mark.stack, pytest.mark.timeout(300)]

STAGES = ["collector", "sessionizer", "analyzer-0"]
BACKLOG_KB = 128


@pytest.fixture
def hanging() -> Iterator[HangingServer]:
    """An OTLP endpoint that accepts connections and never answers (a wedged collector)."""
    with HangingServer("/v1/traces") as rx:
        yield rx


def _fill(directory: Path) -> Path:
    """Take every free block of the tmpfs (root's file: the sink cannot delete it)."""
    filler = directory / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def _status(st: Stack) -> tuple[str, dict[str, dict[str, Any]]]:
    text = st.casa("status", "--url", st.url)
    rows = st.casa("status", "--url", st.url, "--json")
    assert text.returncode == 0, text.stdout + text.stderr     # every program RUNNING
    return text.stdout, {r["name"]: r for r in map(json.loads, rows.stdout.splitlines())}


def _line(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(name))


def _opens(st: Stack, tag: str, n: int) -> None:
    """An agent that creates ``n`` files: about one events.log line (~300 bytes) each."""
    done = st.run_agent(f"mkdir -p {tag}; for i in $(seq {n}); do : > {tag}/f$i; done", timeout_s=120)
    assert done.returncode == 0, done.stderr


def test_full_disk_unwritable_dir_and_hanging_receiver(hanging: HangingServer) -> None:
    with Stack(env={"CASA_OTEL_EXPORTER_OTLP_ENDPOINT": hanging.url}, records_tmpfs_kb=384,
               jsonl_backlog_kb=BACKLOG_KB) as st:
        _opens(st, "warmup", 20)
        st.wait_for_log("events.log", lambda r: r["type"] == "OPENAT" and "warmup/f20" in r.get("path", ""))
        # 1. The disk fills up: the backlog grows to its bound, then records are dropped and counted.
        filler = _fill(st.log_dir)
        _opens(st, "full", 1500)
        c = st.counters(["sinks-jsonl", "sinks-otel", *STAGES],
                        lambda c: c.get("sinks-jsonl", {}).get("lost_records", 0) > 0
                        and c.get("sinks-otel", {}).get("export_failures", 0) > 0)
        jsonl, otel = c["sinks-jsonl"], c["sinks-otel"]
        # bounded in bytes; an events.log line is well over 100 bytes (timestamp, pid, path...)
        assert jsonl["write_errors"] > 0 and 0 < jsonl["events_backlog"] <= BACKLOG_KB * 1024 // 100
        assert otel["spans_retry_backlog"] + otel["spans_queued"] <= 2048 + 8192     # bounded
        text, rows = _status(st)
        assert "lost_records=" in _line(text, "sinks-jsonl") and "write_errors=" in _line(text, "sinks-jsonl")
        assert "export_failures=" in _line(text, "sinks-otel")
        assert rows["sinks-jsonl"]["loss"]["lost_records"] > 0
        for name in STAGES:                              # the pipeline did not notice
            assert rows[name]["state"] == "RUNNING" and rows[name]["rate_eps"] is not None
        # 2. Killed with the backlog in memory: the restarted sink counts it (its position stayed
        #    before it) and shows it; space back, new records are written again.
        old = st.kill9("sinks-jsonl")
        st.wait_restarted("sinks-jsonl", old)
        c = st.counters(["sinks-jsonl"], lambda c: c.get("sinks-jsonl", {}).get("lost_messages", 0) > 0)
        text, rows = _status(st)
        assert f"lost_messages={rows['sinks-jsonl']['counters']['lost_messages']}" in _line(text, "sinks-jsonl")
        filler.unlink()
        _opens(st, "after", 10)
        st.wait_for_log("events.log", lambda r: "after/f10" in r.get("path", ""))
        # 3. The directory becomes unwritable (and the file is rotated away): kept, retried,
        #    written once it is writable again -- below the bound, nothing is lost.
        casa = pwd.getpwnam("casa")
        os.chown(st.log_dir, 0, 0)
        os.chmod(st.log_dir, 0o755)
        (st.log_dir / "events.log").rename(st.log_dir / "events.log.1")
        before = st.counters(["sinks-jsonl"], lambda c: "lost_records" in c.get("sinks-jsonl", {}))
        _opens(st, "ro", 40)
        st.counters(["sinks-jsonl"], lambda c: c.get("sinks-jsonl", {}).get("events_backlog", 0) >= 40)
        os.chown(st.log_dir, casa.pw_uid, casa.pw_gid)
        os.chmod(st.log_dir, 0o750)
        st.wait_for_log("events.log", lambda r: "ro/f40" in r.get("path", ""))
        written = {r["path"].rsplit("/", 1)[-1] for r in st.log("events.log") if r.get("path", "").startswith("ro/f")}
        assert written >= {f"f{i}" for i in range(1, 41)}
        after = st.counters(["sinks-jsonl"], lambda c: c.get("sinks-jsonl", {}).get("events_backlog") == 0)
        assert after["sinks-jsonl"]["lost_records"] == before["sinks-jsonl"]["lost_records"]
        # 4. The trace sink killed with spans it could not export: counted after its restart.
        old = st.kill9("sinks-otel")
        st.wait_restarted("sinks-otel", old)
        _opens(st, "otel", 5)
        c = st.counters(["sinks-otel"], lambda c: c.get("sinks-otel", {}).get("lost_messages", 0)
                        + c.get("sinks-otel", {}).get("unsaved_at_restart", 0) > 0)
        text, _ = _status(st)
        assert "lost_messages=" in _line(text, "sinks-otel") or "unsaved_at_restart=" in _line(text, "sinks-otel")
