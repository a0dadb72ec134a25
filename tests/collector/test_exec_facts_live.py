"""What an exec event says beyond path and argv (docs/bus.md §5.1): what fds 0-2 are after the
exec and the parent's fd types, the loader's LD_* variables, and the euid and capabilities before
and after. Real processes under a real collector; every exec'd program carries a marker in argv[1].
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.collector.live import EXECS, live_fixture

pytestmark = pytest.mark.root
HERE = Path(__file__).resolve().parent


live = live_fixture("execfacts")


def marked(live, pid: int, marker: str) -> dict:
    """The one exec event of the tree whose argv[1] is ``marker``."""
    found = [e for e in live.tree(pid, "exec") if e["argv"][1:2] == [marker]]
    assert len(found) == 1, found
    return found[0]


def test_stdio_types_and_pipe_pairing(live):
    pid, f = live.workload(EXECS, "stdio_cases", live.fresh())
    e = marked(live, pid, "file-dir-closed")
    assert e["stdio"] == [{"type": "file"}, {"type": "dir"}, {"type": "none"}]
    ino = f["pipe"]["ino"]
    assert marked(live, pid, "pipe")["stdio"] == [{"type": "pipe", "ino": ino}] * 3
    assert marked(live, pid, "null-tty")["stdio"] == [{"type": "char"}, {"type": "tty"}, {"type": "tty"}]
    e = marked(live, pid, "unix-netlink-other")
    assert e["stdio"][0] == {"type": "unix", "ino": f["unix_netlink_other"]["unix_ino"]}
    assert e["stdio"][1]["type"] == "socket" and e["stdio"][2] == {"type": "other"}
    # the parent of each is the workload: its fds, as its own exec event reported them
    own = [x for x in live.tree(pid, "exec") if x["tgid"] == pid and x["argv"][1:2] == [str(EXECS)]]
    assert e["parent_stdio"] == [fd["type"] for fd in own[-1]["stdio"]]
    assert own[-1]["stdio"][1]["type"] == "pipe"          # its stdout is the test's pipe


@pytest.mark.parametrize("key,family", [("inet4", 2), ("inet6", 10)])
def test_inet_stdio_reports_the_peer(live, key, family):
    pid, f = live.workload(EXECS, "stdio_cases", live.fresh())
    facts = f[key]
    cli = {"type": "inet", "ino": facts["cli_ino"], "family": family, "addr": facts["cli_peer"][0],
           "port": facts["cli_peer"][1]}
    acc = {"type": "inet", "ino": facts["acc_ino"], "family": family, "addr": facts["acc_peer"][0],
           "port": facts["acc_peer"][1]}
    assert marked(live, pid, key)["stdio"] == [cli, cli, acc]


def test_pty_spawn_over_a_socket_leaves_the_socket_in_the_parent(live):
    pid, f = live.workload(EXECS, "pty_spawn_over_socket", live.fresh())
    shells = [e for e in live.tree(pid, "exec") if e["path"] == "/bin/sh"]
    assert [(e["stdio"], e["parent_stdio"], e["ppid"]) for e in shells] == [
        ([{"type": "tty"}] * 3, ["inet"] * 3, f["spawner"])]
    inner = marked(live, pid, "pty-spawned")
    assert (inner["stdio"], inner["parent_stdio"]) == ([{"type": "tty"}] * 3, ["tty"] * 3)


def test_loader_variables_found_repeated_cut_and_near_misses(live):
    pid, _ = live.workload(EXECS, "env_cases", live.fresh())
    plain = marked(live, pid, "ld-plain")
    assert plain["ld_env"] == {"LD_PRELOAD": "/nonexistent/p.so", "LD_LIBRARY_PATH": "/opt/a:/opt/b",
                               "LD_AUDIT": "/nonexistent/a.so"}
    assert "ld_env_truncated" not in plain and "env_truncated" not in plain
    rep = marked(live, pid, "ld-repeated")
    # the first and the last occurrence (musl's and glibc's choice); the middle one is not kept
    assert (rep["ld_env"], rep["ld_env_truncated"]) == ({"LD_PRELOAD": "/first.so:/last.so", "LD_AUDIT": ""}, True)
    long = marked(live, pid, "ld-long")
    assert (long["ld_env"], long["ld_env_truncated"]) == ({"LD_LIBRARY_PATH": "/" + "x" * 254}, True)
    assert marked(live, pid, "ld-near-misses")["ld_env"] == {}
    # every ordinary exec reports its (empty) loader environment
    assert marked(live, pid, "ld-near-misses").get("env_truncated") is None


def test_a_padded_environment_trips_env_truncated(live):
    pid, _ = live.workload(EXECS, "env_cases", live.fresh())
    within = marked(live, pid, "ld-within")           # 250 entries, then LD_PRELOAD: still seen
    assert (within["ld_env"], within.get("env_truncated")) == ({"LD_PRELOAD": "/within.so"}, None)
    padded = marked(live, pid, "ld-padded")           # 300 entries: past MAX_ENV (256)
    assert (padded["ld_env"], padded["env_truncated"]) == ({}, True)
    assert live.counters()["env_truncated"] >= 1


def test_setuid_and_file_capability_execs_raise_privilege_visibly(live):
    if shutil.which("setcap") is None:
        pytest.skip("setcap is not installed (libcap2-bin)")
    d = live.fresh()
    for p in (d.parent, d):
        p.chmod(0o755)                                    # nobody must reach the copies
    pid, f = live.workload(EXECS, "privileged_execs", d)
    root_caps = live.tree(pid, "exec")[0]["cap_eff"]       # the tree's root runs as root
    got = {m: marked(live, pid, m) for m in ("suid-true", "cap-true", "plain-true")}
    view = {m: (e["ret"], e["uid"], e["prev_euid"], e["euid"], e["prev_cap_eff"], e["cap_eff"])
            for m, e in got.items()}
    assert view == {"suid-true": (0, 65534, 65534, 0, 0, root_caps),   # uid: the real uid
                    "cap-true": (0, 65534, 65534, 65534, 0, 1 << 13),  # CAP_NET_RAW from the file
                    "plain-true": (0, 65534, 65534, 65534, 0, 0)}
    assert {e["tgid"] for e in got.values()} == {f["suid-true"], f["cap-true"], f["plain-true"]}


def test_a_failed_exec_has_credentials_but_no_fds_or_environment(live):
    d = live.fresh()
    pid, _ = live.run_root(f"{d}/missing failed-exec 2>/dev/null; true")
    failed = [e for e in live.tree(pid, "exec") if e["path"] == f"{d}/missing"]
    assert [(e["ret"], e["euid"], e["prev_euid"]) for e in failed] == [(-2, 0, 0)]
    assert not {"stdio", "parent_stdio", "ld_env"} & set(failed[0])


@pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("gcc") is None,
                    reason="int $0x80 is x86 (and needs gcc to build the helper)")
def test_an_exec_the_syscall_tracepoints_do_not_see_is_still_reported(live, tmp_path):
    """A 32-bit execve (int $0x80) skips every syscalls:* tracepoint: the exec is built at
    sched_process_exec instead, without the sys_enter facts (prev_euid None)."""
    helper = tmp_path / "compat_exec"
    subprocess.run(["gcc", "-O2", "-o", str(helper), str(HERE / "compat_exec.c")], check=True)
    pid, out = live.run_root(f"{helper} /bin/echo compat-marker")
    assert out.strip() == "compat-marker"
    e = marked(live, pid, "compat-marker")
    assert (e["tgid"], e["path"], e["argv"], e["ret"], e["prev_euid"], e["comm"]) == (
        pid, "/bin/echo", ["/bin/echo", "compat-marker"], 0, None, "echo")
    assert e["stdio"][1]["type"] == "pipe" and e["ino"] == os.stat(os.path.realpath("/bin/echo")).st_ino
