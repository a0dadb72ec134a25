"""What setup.sh creates, and what an unprivileged user (the agent's) can do to a running stack.

* The directories setup.sh makes have the owners and modes docs/security.md promises.
* In a running stack (tests/stack/stack.py builds its directories exactly as setup.sh does), every
  socket has its documented owner and mode, and the user ``nobody`` -- standing in for the agent's
  user, in no CASA group -- can neither connect to nor bind any bus socket or the control socket;
  can neither read, append to, truncate, replace (rename, symlink) nor delete any log, record or
  checkpoint; and can neither signal, ptrace nor read the memory or environment of any stage.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack.stack import Stack

pytestmark = [pytest.mark.root]

SETUP_DIRS = {                      # path -> (owner, group, mode), as setup.sh makes them
    "/run/casa": ("root", "casa", 0o770),
    "/run/casa-root": ("root", "root", 0o755),
    "/var/log/casa": ("casa", "casa", 0o750),
    "/var/log/casa-root": ("root", "casa", 0o750),
    "/var/lib/casa": ("casa", "casa", 0o750),
}


def _owner(path: Path) -> tuple[str, str, int]:
    st = os.lstat(path)
    return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)


@pytest.mark.parametrize("path", sorted(SETUP_DIRS))
def test_setup_made_each_directory_with_its_owner_and_mode(path: str) -> None:
    assert stat.S_ISDIR(os.lstat(path).st_mode), f"{path} is not a directory (a symlink?)"
    assert _owner(Path(path)) == SETUP_DIRS[path]


def test_setup_did_not_make_the_checkout_writable_or_env_world_readable() -> None:
    checkout = Path(__file__).resolve().parents[2]
    for rel in ("", "collector", "bus", "trust", "config", "config/casa.json", "rules.json", ".venv"):
        mode = os.lstat(checkout / rel).st_mode
        assert not mode & 0o022, f"{checkout / rel} is group/world writable"
    env = checkout / ".env"
    if env.exists():
        assert _owner(env) == ("root", "casa", 0o640)


PROBE = r'''
import ctypes, errno, json, os, signal, socket, sys
targets = json.loads(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
out = {}

def attempt(name, fn):
    try:
        fn()
        out[name] = "ALLOWED"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))

def ptrace(pid):
    if libc.ptrace(16, pid, 0, 0) != 0:          # PTRACE_ATTACH
        raise OSError(ctypes.get_errno(), "ptrace")
    libc.ptrace(17, pid, 0, 0)                   # PTRACE_DETACH (never reached when denied)

for path in targets["sockets"]:
    attempt(f"connect {path}", lambda: socket.socket(socket.AF_UNIX).connect(path))
for d in targets["private_dirs"]:
    attempt(f"list {d}", lambda: os.listdir(d))
for d in targets["dirs"]:
    attempt(f"plant {d}", lambda: os.symlink("/etc/passwd", os.path.join(d, "planted")))
    attempt(f"bind {d}", lambda: socket.socket(socket.AF_UNIX).bind(os.path.join(d, "fake.sock")))
for f in targets["files"]:
    attempt(f"read {f}", lambda: open(f, "rb").close())
    attempt(f"append {f}", lambda: open(f, "ab").close())
    attempt(f"truncate {f}", lambda: os.truncate(f, 0))
    attempt(f"rename {f}", lambda: os.rename(f, f + ".moved"))
    attempt(f"unlink {f}", lambda: os.unlink(f))
for name, pid in targets["pids"].items():
    attempt(f"signal {name}", lambda: os.kill(pid, signal.SIGSTOP))
    attempt(f"ptrace {name}", lambda: ptrace(pid))
    attempt(f"mem {name}", lambda: open(f"/proc/{pid}/mem", "rb").close())
    attempt(f"environ {name}", lambda: open(f"/proc/{pid}/environ", "rb").close())
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack() as st:
        done = st.run_agent("printf '#!/bin/sh\\n' > x.sh; chmod +x x.sh; ./x.sh")
        assert done.returncode == 0, done.stderr
        st.wait_for_log("events.log", lambda r: r["type"] == "EXECVE")
        yield st


@pytest.mark.stack
def test_every_socket_has_its_owner_and_mode(stack: Stack) -> None:
    want = {"collector.sock": ("root", "casa", 0o660), "sessionizer.sock": ("casa", "casa", 0o660),
            "analyzer-0.sock": ("casa", "casa", 0o660), "sinks-jsonl.sock": ("casa", "casa", 0o660),
            "sinks-otel.sock": ("casa", "casa", 0o660), "sinks-webhook.sock": ("casa", "casa", 0o660),
            "sinks-program.sock": ("casa", "casa", 0o660), "responder.sock": ("casa", "casa", 0o660)}
    got = {p.name: _owner(p) for p in stack.bus_dir.iterdir() if stat.S_ISSOCK(os.lstat(p).st_mode)}
    assert got == want
    assert _owner(stack.root_run / "supervisord.sock") == ("root", "root", 0o700)
    for log in stack.root_log.glob("*.log"):        # readable only through the 0750 directory
        assert _owner(log)[0] == "root" and not _owner(log)[2] & 0o022, log


@pytest.mark.stack
def test_an_unprivileged_user_can_touch_nothing_of_a_running_stack(stack: Stack) -> None:
    files = sorted(str(p) for d in (stack.log_dir, stack.root_log, stack.state_dir) for p in d.iterdir()
                   if p.is_file())
    assert any(f.endswith("events.log") for f in files) and any(f.endswith("collector.err.log") for f in files)
    targets = {"sockets": sorted(str(p) for p in stack.bus_dir.glob("*.sock"))
                          + [str(stack.root_run / "supervisord.sock")],
               "dirs": [str(d) for d in (stack.bus_dir, stack.root_run, stack.log_dir, stack.root_log,
                                         stack.state_dir)],
               # /run/casa-root is 0755 (its names are no secret); the others may not be listed
               "private_dirs": [str(d) for d in (stack.bus_dir, stack.log_dir, stack.root_log, stack.state_dir)],
               "files": files, "pids": {n: stack.pid(n) for n in stack.names()}}
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(targets)], user="nobody", group="nogroup",
                         extra_groups=[], capture_output=True, text=True, cwd="/", timeout=60)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    allowed = {k: v for k, v in results.items() if v not in ("EACCES", "EPERM")}
    assert allowed == {}, allowed                   # denied by permissions, not by chance (ENOENT ...)
    assert len(results) == len(targets["sockets"]) + len(targets["private_dirs"]) + 2 * len(targets["dirs"]) \
        + 5 * len(files) + 4 * len(targets["pids"])
    assert all(stack.processes()[n].state == "RUNNING" for n in stack.names())    # none was stopped
