"""The real collector, real eBPF, real processes: exact events on the bus.

One collector per module (compiling the BPF program takes ~1 s). Every test drives a tree rooted
at a copy of /bin/bash named casa-test-root, matched by the test profile after start-up, and
waits for the root's exit event before asserting (the exit is the tree's last event).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.collector.harness import TEST_PROFILE, TEST_ROOT_COMM, running_collector

pytestmark = pytest.mark.root

WORKLOAD = Path(__file__).resolve().parent / "workload.py"
O_WRONLY, O_CREAT, O_TRUNC = os.O_WRONLY, os.O_CREAT, os.O_TRUNC


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("collector")
    profiles = [{"name": TEST_PROFILE, "kind": "invocation", "match": [{"comm": [TEST_ROOT_COMM]}]},
                {"name": "fake-agent", "kind": "invocation",
                 "match": [{"exe_basename": ["casa-fake-agent"], "argv_any": ["-m"]}]},
                {"name": "fake-gw", "kind": "runtime",
                 "match": [{"comm": ["casa-fake-gw"], "argv_contains": ["never"]},
                           {"exe_basename": ["casa-fake-node"], "argv_contains": ["gateway"]}]}]
    (tmp / "bin").mkdir()
    shutil.copy2("/bin/bash", tmp / "bin" / "casa-fake-node")
    gw = tmp / "casa-fake-gw"
    gw.write_text("#!/usr/bin/env casa-fake-node\n/bin/true gw-child\n")
    gw.chmod(0o755)
    script = tmp / "casa-fake-agent"
    script.write_text("#!/usr/bin/env bash\n/bin/true \"$@\"\n")
    script.chmod(0o755)
    with running_collector(tmp, ringbuf_pages=2048, profiles=profiles) as (col, tap, root_bin):
        yield {"tmp": tmp, "col": col, "tap": tap, "root": root_bin}


def run_root(env: dict[str, Any], script: str) -> tuple[int, str]:
    """Run ``casa-test-root -c script``; wait for its exit event; returns (pid, stdout)."""
    p = subprocess.Popen([str(env["root"]), "-c", script], stdout=subprocess.PIPE, text=True)
    out, _ = p.communicate(timeout=60)
    env["tap"].wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == p.pid, timeout_s=20)
    return p.pid, out


def workload(env: dict[str, Any], *args: str) -> tuple[int, dict[str, Any]]:
    script = "exec " + shlex.join([sys.executable, str(WORKLOAD), *args])
    pid, out = run_root(env, script)
    return pid, json.loads(out) if out.strip() else {}


def test_root_exec_fork_exec_exit_with_exact_fields(env):
    tap = env["tap"]
    pid, _ = run_root(env, "/bin/echo hello world >/dev/null; exit 3")
    root_exec = tap.of(kind="exec", tgid=pid)[0]
    assert root_exec["path"] == str(env["root"])
    assert root_exec["argv"] == [str(env["root"]), "-c", "/bin/echo hello world >/dev/null; exit 3"]
    assert root_exec["ret"] == 0 and root_exec["ppid"] == os.getpid() and root_exec["root"] == pid
    assert root_exec["exe"] == root_exec["path"]
    assert isinstance(root_exec["cap_eff"], int) and root_exec["seccomp"] == 0
    root = tap.of(kind="root", tgid=pid)
    assert [(r["profile"], r["reason"], r["ppid"]) for r in root] == [(TEST_PROFILE, "exec", os.getpid())]
    fork = tap.of(kind="fork", tgid=pid)
    assert len(fork) == 1
    child = fork[0]["child_tgid"]
    child_exec = tap.of(kind="exec", tgid=child)
    assert [(e["path"], e["argv"], e["ret"], e["ppid"], e["root"], e["syscall"]) for e in child_exec] == [
        ("/bin/echo", ["/bin/echo", "hello", "world"], 0, pid, pid, "execve")]
    assert [e["exit_code"] for e in tap.of(kind="exit", tgid=child)] == [0]
    assert [e["exit_code"] for e in tap.of(kind="exit", tgid=pid)] == [3 << 8]


def test_failed_exec_reports_errno(env):
    pid, _ = run_root(env, "/nonexistent/casa-missing-binary; true")
    failed = [e for e in env["tap"].events if e["kind"] == "exec" and e["path"] == "/nonexistent/casa-missing-binary"]
    assert len(failed) == 1 and failed[0]["ret"] == -2 and failed[0]["ppid"] == pid


def test_open_for_write_exact(env):
    path = str(env["tmp"] / f"written-{uuid.uuid4().hex}")
    pid, facts = workload(env, "write", path)
    opens = env["tap"].of(kind="open", path=path)
    assert [(e["tgid"], e["syscall"], e["flags"] & ~os.O_CLOEXEC, e["mode"], e["ret"]) for e in opens] == [
        (pid, "openat", O_WRONLY | O_CREAT | O_TRUNC, 0o640, facts["fd"])]


def test_openat_openat2_and_open_carry_dirfd_flags_mode_and_ret(env):
    # read back at sys_exit from the saved user registers: every argument must still be right
    d = env["tmp"] / f"calls-{uuid.uuid4().hex}"
    d.mkdir()
    pid, facts = workload(env, "open_calls", str(d))
    want = [tuple(c) for c in facts["calls"]]
    names = {c[1] for c in facts["calls"]}
    got = [(e["syscall"], e["path"], e["flags"] & ~os.O_CLOEXEC, e["mode"], e["dirfd"], e["ret"])
           for e in env["tap"].of(kind="open", tgid=pid) if e["path"] in names]
    assert got == want
    assert {c[0] for c in want} >= {"openat", "openat2"}
    assert any(c[5] < 0 for c in want) and any(c[5] >= 0 for c in want)


def test_a_record_that_wakes_nobody_is_read_on_the_next_poll(env):
    """Open records do not wake the reader (bpf/collector.bpf.c lazy_wakeup): a lone open with
    nothing after it -- no exec, no exit, far from the wakeup mark -- must still arrive on the
    reader's next 5 ms pass, not when something else happens to wake it."""
    marker = env["tmp"] / f"lone-{uuid.uuid4().hex}"
    code = f"import time; time.sleep(0.5); open({str(marker)!r}, 'w').close(); time.sleep(5)"
    p = subprocess.Popen([str(env["root"]), "-c", shlex.join(["exec", sys.executable, "-c", code])])
    try:
        ev = env["tap"].wait_for(lambda e: e["kind"] == "open" and e["path"] == str(marker), timeout_s=4)
        seen_ns = time.time_ns()
        assert p.poll() is None, "the process is still asleep: nothing after the open pushed it out"
        assert seen_ns - ev["ts_ns"] < 1_000_000_000
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("family,addr,af", [("4", "127.0.0.1", socket.AF_INET), ("6", "::1", socket.AF_INET6)])
def test_connect_loopback_exact(env, family, addr, af):
    with socket.socket(af, socket.SOCK_STREAM) as srv:
        srv.bind((addr, 0))
        srv.listen(4)
        port = srv.getsockname()[1]
        pid, facts = workload(env, "connect", family, str(port))
    assert facts["rc"] == 0
    conns = env["tap"].of(kind="connect", tgid=pid, port=port)
    assert [(e["family"], e["addr"], e["port"], e["ret"]) for e in conns] == [(int(af), addr, port, 0)]


def test_untracked_process_is_invisible(env):
    tap = env["tap"]
    marker = str(env["tmp"] / f"untracked-{uuid.uuid4().hex}")
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        subprocess.run(["/bin/sh", "-c", f"echo x > {marker}; cat {marker} >/dev/null"], check=True)
        with socket.create_connection(("127.0.0.1", port)):
            pass
    pid, _ = run_root(env, "true")        # a later tracked event: everything before has arrived
    assert tap.of(kind="exec", tgid=pid)
    assert not [e for e in tap.events if e.get("path") == marker or e.get("port") == port]
    assert not tap.of(tgid=os.getpid())


def test_new_root_is_seen_with_its_first_child(env):
    # the root forks before doing anything else; the child opens a file at once
    marker = str(env["tmp"] / f"first-child-{uuid.uuid4().hex}")
    pid, _ = run_root(env, f"( : > {marker} ); true")
    fork = env["tap"].of(kind="fork", tgid=pid)
    assert len(fork) == 1
    child_open = env["tap"].of(kind="open", path=marker)
    assert [(e["tgid"], e["ppid"], e["root"]) for e in child_open] == [(fork[0]["child_tgid"], pid, pid)]


def test_23_execs_give_exactly_23_exec_events(env):
    pid, _ = run_root(env, "for ((i=0; i<23; i++)); do /bin/true; done")
    execs = [e for e in env["tap"].events if e["kind"] == "exec" and e["root"] == pid and e["path"] == "/bin/true"]
    assert len(execs) == 23
    assert {e["ppid"] for e in execs} == {pid}


def test_burst_of_20k_opens_is_gap_free(env):
    tap = env["tap"]
    path = str(env["tmp"] / f"burst-{uuid.uuid4().hex}")
    Path(path).write_text("x")
    lost_before = tap.sub.counters.lost_messages
    pid, facts = workload(env, "opens", path, "20000")
    got = tap.of(kind="open", path=path, tgid=pid)
    hb = tap.wait_heartbeat()
    assert tap.sub.counters.lost_messages == lost_before
    assert hb.counters["kernel_drops"] == 0
    assert len(got) == facts["count"] == 20000


@pytest.mark.parametrize("how,syscall", [("fd", "execveat"), ("proc", "execve")])
def test_memfd_exec_resolves_the_file_behind_the_fd(env, how, syscall):
    pid, _ = workload(env, "memfd", how)
    execs = [e for e in env["tap"].of(kind="exec", tgid=pid) if e["syscall"] == syscall and e["ret"] == 0]
    assert execs, env["tap"].of(kind="exec", tgid=pid)
    assert execs[-1]["exe"] == "memfd:payload (deleted)"
    if how == "proc":
        assert execs[-1]["path"].startswith("/proc/self/fd/")


def test_odd_paths_arrive_intact(env):
    d = env["tmp"] / f"odd-{uuid.uuid4().hex}"
    d.mkdir()
    pid, facts = workload(env, "odd", str(d))
    want = [bytes.fromhex(h) for h in facts["paths"]]
    assert max(len(w) for w in want) > 3000
    got = [os.fsencode(e["path"]) for e in env["tap"].of(kind="open", tgid=pid) if e["path"].startswith(str(d))]
    assert got == want


def test_argv_beyond_limits_is_marked_truncated(env):
    args = " ".join(f"a{i}" for i in range(30))
    pid, _ = run_root(env, f"/bin/echo {args} >/dev/null; true")
    e = [x for x in env["tap"].of(kind="exec", ppid=pid) if x["path"] == "/bin/echo"][0]
    assert e["argv"] == ["/bin/echo"] + [f"a{i}" for i in range(15)]
    assert e["argv_truncated"] is True


def test_heartbeat_counters_and_reload_control(env):
    tap = env["tap"]
    hb = tap.wait_heartbeat()
    assert hb.counters["events_exec"] > 0 and "tracked_processes" in hb.counters
    env["col"].signal(signal.SIGHUP)
    tap.wait_heartbeat()
    tap.wait_heartbeat()
    assert [(c["command"], c["id"]) for c in tap.controls] == [("reload", 1)]


def test_script_root_matched_by_path_and_argv_and_rejected_otherwise(env):
    tap = env["tap"]
    script = str(env["tmp"] / "casa-fake-agent")
    ok = subprocess.Popen([script, "agent", "-m", "hi"])
    ok.wait(30)
    tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == ok.pid)
    roots = tap.of(kind="root", tgid=ok.pid)
    assert [(r["profile"], r["reason"], r["exe"]) for r in roots] == [("fake-agent", "exec", script)]
    assert [e["argv"] for e in tap.of(kind="exec", root=ok.pid) if e["path"] == "/bin/true"] == [
        ["/bin/true", "agent", "-m", "hi"]]
    no = subprocess.Popen([script, "--help"])
    no.wait(30)
    run_root(env, "true")                 # a later tracked tree: everything before has arrived
    assert not [e for e in tap.events if no.pid in (e.get("tgid"), e.get("root"))]


def test_env_script_rejected_at_first_exec_is_confirmed_at_the_interpreter_exec(env):
    tap = env["tap"]
    path = os.environ.get("PATH", "/usr/bin:/bin")
    p = subprocess.Popen([str(env["tmp"] / "casa-fake-gw"), "gateway"],
                         env={"PATH": f"{env['tmp'] / 'bin'}:{path}"})
    p.wait(30)
    tap.wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == p.pid)
    roots = tap.of(kind="root", tgid=p.pid)
    assert [(r["profile"], os.path.basename(r["exe"])) for r in roots] == [("fake-gw", "casa-fake-node")]
    child = [e for e in tap.of(kind="exec", root=p.pid) if e["path"] == "/bin/true"]
    assert [(e["argv"], e["ppid"]) for e in child] == [(["/bin/true", "gw-child"], p.pid)]


def test_unprivileged_exec_has_its_uid_and_no_capabilities(env):
    import pwd
    import tempfile
    casa = pwd.getpwnam("casa")
    public = Path(tempfile.mkdtemp(prefix="casa-collector-", dir="/tmp"))
    try:
        public.chmod(0o755)
        root_bin = public / TEST_ROOT_COMM
        shutil.copy2(env["root"], root_bin)
        p = subprocess.Popen(["runuser", "-u", "casa", "--", str(root_bin), "-c", "/bin/true; true"])
        p.wait(30)
        root_exec = env["tap"].wait_for(lambda e: e["kind"] == "exec" and e["path"] == str(root_bin)
                                        and e["uid"] == casa.pw_uid)
        env["tap"].wait_for(lambda e: e["kind"] == "exit" and e["tgid"] == root_exec["tgid"])
        child = [e for e in env["tap"].of(kind="exec", root=root_exec["tgid"]) if e["path"] == "/bin/true"]
        assert [(e["uid"], e["cap_eff"], e["seccomp"]) for e in child] == [(casa.pw_uid, 0, 0)]
    finally:
        shutil.rmtree(public)


def test_threads_are_not_forks_and_a_process_exits_once(env):
    pid, facts = workload(env, "threads", "4")
    assert facts["threads"] == 4
    assert env["tap"].of(kind="fork", tgid=pid) == []
    assert len(env["tap"].of(kind="exit", tgid=pid)) == 1


def test_exit_code_of_a_killed_process_is_its_signal(env):
    pid, _ = run_root(env, "sleep 30 & kill -9 $!; wait; true")
    child = env["tap"].of(kind="fork", tgid=pid)[0]["child_tgid"]
    assert [e["exit_code"] for e in env["tap"].of(kind="exit", tgid=child)] == [9]


def test_timestamps_are_wall_clock_and_ordered(env):
    import time
    before = time.time_ns()
    pid, _ = run_root(env, "/bin/true; true")
    after = time.time_ns()
    tree = [e for e in env["tap"].events if e.get("root") == pid and e["kind"] != "root"]
    assert tree and all(before <= e["ts_ns"] <= after for e in tree)
    exit_ts = env["tap"].of(kind="exit", tgid=pid)[0]["ts_ns"]
    assert max(e["ts_ns"] for e in tree) == exit_ts


def test_exec_of_an_unlinked_file_through_its_fd_names_it_deleted(env):
    path = env["tmp"] / f"victim-{uuid.uuid4().hex[:8]}"
    pid, _ = workload(env, "deleted", str(path))
    execs = [e for e in env["tap"].of(kind="exec", tgid=pid) if e["syscall"] == "execveat" and e["ret"] == 0]
    assert [e["exe"] for e in execs] == [f"{path} (deleted)"]
    assert [e["abspath"] for e in execs] == [""]          # unlinked: no path to resolve to
