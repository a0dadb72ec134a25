"""`python -m collector` as a user meets it: bad config (exit 2), not root (exit 1), --ebpf,
and a full life cycle: bootstrap of a root already running, pid file, SIGTERM -> exit 0."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.collector.harness import (CHECKOUT, CollectorProcess, EventTap,
                                     make_test_root, test_config)


def run_collector(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "collector", *args]
    if user:
        cmd = ["runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, cwd=CHECKOUT, capture_output=True, text=True, timeout=60)


def test_invalid_json_exits_2_naming_the_file_and_line(tmp_path: Path):
    bad = tmp_path / "casa.json"
    bad.write_text('{"profiles": [\n  {"name": "x",,}\n]}')
    r = run_collector("--config", str(bad))
    assert r.returncode == 2
    assert f"{bad}:2:" in r.stderr and "invalid JSON" in r.stderr


@pytest.mark.parametrize("collector,field", [({"max_args": "many"}, "collector.max_args"),
                                             ({"max_path_len": 1000}, "collector.max_path_len"),
                                             ({"ringbuf_pages": 3}, "collector.ringbuf_pages"),
                                             ({"colour": 1}, "unknown field(s) ['colour']")])
def test_bad_collector_field_exits_2_naming_it(tmp_path: Path, collector, field):
    cfg = test_config(tmp_path / "casa.json", pid_file=tmp_path / "p.pid")
    data = json.loads(cfg.read_text())
    data["collector"].update(collector)
    cfg.write_text(json.dumps(data))
    r = run_collector("--config", str(cfg))
    assert r.returncode == 2
    assert str(cfg) in r.stderr and field in r.stderr


def test_bad_profile_exits_2(tmp_path: Path):
    cfg = test_config(tmp_path / "casa.json", pid_file=tmp_path / "p.pid",
                      profiles=[{"name": "x", "kind": "sometimes", "match": [{"comm": ["x"]}]}])
    r = run_collector("--config", str(cfg))
    assert r.returncode == 2 and "'kind' must be one of" in r.stderr


def test_unknown_profile_for_extra_pid_exits_2(tmp_path: Path):
    cfg = test_config(tmp_path / "casa.json", pid_file=tmp_path / "p.pid")
    r = run_collector("--config", str(cfg), "-p", "1", "--profile", "nope")
    assert r.returncode == 2 and "--profile 'nope'" in r.stderr


def test_ebpf_prints_the_program_and_cflags(tmp_path: Path):
    cfg = test_config(tmp_path / "casa.json", pid_file=tmp_path / "p.pid", max_args=8)
    r = run_collector("--config", str(cfg), "--ebpf")
    assert r.returncode == 0
    first = r.stdout.splitlines()[0]
    assert first.startswith("// cflags:") and "-DMAX_ARGS=8" in first and "-DOFF_TASK_REAL_PARENT=" in first
    assert "TRACEPOINT_PROBE(sched, sched_process_exit)" in r.stdout


@pytest.mark.root
def test_not_root_exits_1_with_a_clear_message(tmp_path: Path):
    r = run_collector("--config", str(CHECKOUT / "config" / "casa.json"), user="casa")
    assert r.returncode == 1, r.stderr
    assert "must run as root" in r.stderr


@pytest.mark.root
def test_bootstrap_pid_file_and_sigterm(tmp_path: Path):
    root_bin = make_test_root(tmp_path)
    # a root (and a child) running before the collector starts
    early = subprocess.Popen([str(root_bin), "-c", "sleep 60 & read x; kill $!; wait"],
                             stdin=subprocess.PIPE, text=True)
    extra = subprocess.Popen(["/bin/sh", "-c", "read x"], stdin=subprocess.PIPE, text=True)   # -p root
    try:
        cfg = test_config(tmp_path / "casa.json", pid_file=tmp_path / "collector.pid")
        col = CollectorProcess(cfg, tmp_path / "bus", ["-p", str(extra.pid)]).start()
        try:
            assert col.pid_file.read_text().strip() == str(col.proc.pid)
            with EventTap(tmp_path / "bus") as tap:
                # bootstrap root events went out before the tap joined; the tree is tracked though
                early.stdin.write("go\n")
                early.stdin.flush()
                exit_ev = tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == early.pid, 15)
                assert exit_ev["root"] == early.pid
                sleeper_exit = [e for e in tap.of(kind="exit", root=early.pid) if e["tgid"] != early.pid]
                assert [(e["comm"], e["exit_code"]) for e in sleeper_exit] == [("sleep", signal.SIGTERM)]
                extra.stdin.write("go\n")
                extra.stdin.flush()
                extra_exit = tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == extra.pid, 15)
                assert extra_exit["root"] == extra.pid
                hb = tap.wait_heartbeat()
                assert hb.counters["events_root"] == 2
        finally:
            col.signal(signal.SIGTERM)
            assert col.stop() == 0
        assert not col.pid_file.exists()
        assert "collector stopped" in col.log()
    finally:
        for p in (early, extra):
            p.kill()
            p.wait()
            p.stdin.close()


def test_missing_tracepoint_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from collector import loader
    for tp in loader.TRACEPOINTS:
        if tp != "syscalls/sys_exit_openat2":
            (tmp_path / "events" / tp).mkdir(parents=True)
    monkeypatch.setattr(loader, "tracefs_root", lambda: tmp_path)
    with pytest.raises(loader.LoaderError, match="tracepoint syscalls:sys_exit_openat2 is missing"):
        loader.check_tracepoints()
    monkeypatch.setattr(loader, "tracefs_root", lambda: None)
    with pytest.raises(loader.LoaderError, match="tracefs is not mounted"):
        loader.check_tracepoints()


def test_buffer_pages_flag_overrides_the_config_and_is_validated(tmp_path: Path):
    cfg = test_config(tmp_path / "casa.json", pid_file=tmp_path / "p.pid")
    ok = run_collector("--config", str(cfg), "-b", "1024", "--ebpf")
    assert ok.returncode == 0 and "-DRINGBUF_PAGES=1024" in ok.stdout.splitlines()[0]
    bad = run_collector("--config", str(cfg), "-b", "3", "--ebpf")
    assert bad.returncode == 2 and "-b 3: ring buffer pages must be a power of two" in bad.stderr


def _probes(source: Path) -> set[str]:
    text = source.read_text()
    return {f"{cat}/{name}" for cat, name in re.findall(r"TRACEPOINT_PROBE\((\w+),\s*(\w+)\)", text)}


def test_loader_checks_exactly_the_probed_tracepoints_and_the_noop_floor_mirrors_them():
    # the overhead floor (bench/noop_probes.bpf.c) is only honest with the collector's probe set:
    # the TRACEPOINT_PROBEs of the source plus the tracepoints of the family programs
    from collector import loader
    families = [tp for tps in loader.FAMILIES.values() for tp in tps]
    assert len(families) == len(set(families))                    # one program per tracepoint
    assert not _probes(loader.SOURCE) & set(families)
    assert _probes(loader.SOURCE) | set(families) == set(loader.TRACEPOINTS)
    assert _probes(CHECKOUT / "bench" / "noop_probes.bpf.c") == set(loader.TRACEPOINTS)
    assert loader.OPTIONAL_TRACEPOINTS <= set(families)           # attached only where present
    assert not {tp for tp in loader.TRACEPOINTS if tp.startswith("syscalls/sys_enter_open")}
    for fn in loader.FAMILIES:
        assert re.search(rf"^int {fn}\(", loader.SOURCE.read_text(), re.M), fn
    for machine in loader.SYSCALL_NRS:
        names = {tp.split("_", 2)[2] for tp in families}              # sys_exit_chmod -> chmod
        assert names == set(loader.syscall_numbers(machine)), machine
