"""Execs whose fds, environment and credentials the collector must report; prints JSON facts.

    python exec_workload.py ACTION DIR

Every exec'd program is /bin/true (or a copy) with a marker as argv[1], so a test finds its exec
event by argv. Sockets connect only to listeners this process bound on 127.0.0.1 / ::1.
"""

from __future__ import annotations

import ctypes
import json
import os
import pty
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable

LIBC = ctypes.CDLL(None, use_errno=True)
TRUE = "/bin/true"


def _run_with_fds(marker: str, fds: tuple[int | None, int | None, int | None], program: str = TRUE) -> int:
    """fork; in the child put fds[i] on fd i (None: closed); exec program with argv[1] = marker."""
    pid = os.fork()
    if pid == 0:
        try:
            for i, fd in enumerate(fds):
                if fd is None:
                    os.close(i)
                elif fd != i:
                    os.dup2(fd, i)
            os.execv(program, [os.path.basename(program), marker])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)
    return pid


def _tcp_pair(family: int, host: str) -> tuple[socket.socket, socket.socket, socket.socket]:
    srv = socket.socket(family, socket.SOCK_STREAM)
    srv.bind((host, 0))
    srv.listen(1)
    cli = socket.create_connection(srv.getsockname()[:2])
    acc, _ = srv.accept()
    return srv, cli, acc


def stdio_cases(d: str) -> dict:
    """fds 0-2 as: regular file, directory, closed; pipe pairs; /dev/null; a pty; TCP over IPv4
    and IPv6 (client and accepted ends); a unix socketpair; a netlink socket; an eventfd."""
    out: dict = {}
    f = os.open(os.path.join(d, "in.txt"), os.O_RDWR | os.O_CREAT, 0o600)
    dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    out["file_dir_closed"] = _run_with_fds("file-dir-closed", (f, dirfd, None))
    r, w = os.pipe()
    out["pipe"] = {"ino": os.fstat(r).st_ino, "pid": _run_with_fds("pipe", (r, w, w))}
    null = os.open("/dev/null", os.O_RDWR)
    master, slave = pty.openpty()
    out["null_tty"] = _run_with_fds("null-tty", (null, slave, slave))
    for key, family, host in (("inet4", socket.AF_INET, "127.0.0.1"), ("inet6", socket.AF_INET6, "::1")):
        srv, cli, acc = _tcp_pair(family, host)
        out[key] = {"pid": _run_with_fds(key, (cli.fileno(), cli.fileno(), acc.fileno())),
                    "cli_ino": os.fstat(cli.fileno()).st_ino, "acc_ino": os.fstat(acc.fileno()).st_ino,
                    "cli_peer": list(cli.getpeername()[:2]), "acc_peer": list(acc.getpeername()[:2])}
        for s in (srv, cli, acc):
            s.close()
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    efd = os.eventfd(0)
    out["unix_netlink_other"] = {"pid": _run_with_fds("unix-netlink-other", (a.fileno(), nl.fileno(), efd)),
                                 "unix_ino": os.fstat(a.fileno()).st_ino}
    return out


def pty_spawn_over_socket(d: str) -> dict:
    """A reverse shell's upgrade: python with a TCP socket on fds 0-2 runs pty.spawn(sh). The
    shell's own fds are the pty; the socket is in its parent (this python's child)."""
    srv, cli, acc = _tcp_pair(socket.AF_INET, "127.0.0.1")
    pid = os.fork()
    if pid == 0:
        for i in range(3):
            os.dup2(cli.fileno(), i)
        pty.spawn(["/bin/sh", "-c", f"{TRUE} pty-spawned"])
        os._exit(0)
    acc.shutdown(socket.SHUT_WR)                  # stdin of the spawner sees EOF
    os.waitpid(pid, 0)
    out = {"spawner": pid, "peer": list(cli.getpeername()[:2])}
    for s in (srv, cli, acc):
        s.close()
    return out


def _execve_raw(path: str, argv: list[str], env: list[bytes]) -> int:
    """execve(2) with an environment list as given (duplicates and odd entries kept)."""
    cargv = (ctypes.c_char_p * (len(argv) + 1))(*[a.encode() for a in argv], None)
    cenv = (ctypes.c_char_p * (len(env) + 1))(*env, None)
    pid = os.fork()
    if pid == 0:
        LIBC.execve(path.encode(), cargv, cenv)
        os._exit(127)
    os.waitpid(pid, 0)
    return pid


def env_cases(d: str) -> dict:
    """LD_* variables: once each, repeated, cut at 255 bytes, near-misses, and one hidden behind
    a padded environment (more entries than the kernel checks)."""
    out = {}
    out["plain"] = _execve_raw(TRUE, ["true", "ld-plain"], [
        b"HOME=/nonexistent", b"LD_PRELOAD=/nonexistent/p.so", b"LD_LIBRARY_PATH=/opt/a:/opt/b",
        b"LD_AUDIT=/nonexistent/a.so"])
    out["repeated"] = _execve_raw(TRUE, ["true", "ld-repeated"], [
        b"LD_PRELOAD=/first.so", b"LD_PRELOAD=/middle.so", b"LD_PRELOAD=/last.so", b"LD_AUDIT=",
        b"LD_AUDIT="])
    out["long"] = _execve_raw(TRUE, ["true", "ld-long"], [b"LD_LIBRARY_PATH=/" + b"x" * 400])
    out["near_misses"] = _execve_raw(TRUE, ["true", "ld-near-misses"], [
        b"LD_PRELOADX=/a.so", b"XLD_PRELOAD=/b.so", b"ld_preload=/c.so", b"LD_PRELOAD", b"LD_AUDI=/d",
        b"LD_LIBRARY_PATH"])
    pad = [b"PAD%03d=x" % i for i in range(250)]
    out["within"] = _execve_raw(TRUE, ["true", "ld-within"], pad + [b"LD_PRELOAD=/within.so"])
    pad = [b"PAD%04d=x" % i for i in range(300)]
    out["padded"] = _execve_raw(TRUE, ["true", "ld-padded"], pad + [b"LD_PRELOAD=/hidden.so"])
    return out


def _as_nobody(program: str, marker: str) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.execv(program, [os.path.basename(program), marker])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)
    return pid


def privileged_execs(d: str) -> dict:
    """As user nobody: exec a set-uid-root copy of /bin/true, a copy with CAP_NET_RAW as a file
    capability (setcap), and a plain copy (the control)."""
    os.chmod(d, 0o755)
    paths = {name: os.path.join(d, name) for name in ("suid-true", "cap-true", "plain-true")}
    for p in paths.values():
        shutil.copy2(TRUE, p)
        os.chmod(p, 0o755)
    os.chmod(paths["suid-true"], 0o4755)
    subprocess.run(["setcap", "cap_net_raw+ep", paths["cap-true"]], check=True)
    return {name: _as_nobody(p, name) for name, p in paths.items()}


ACTIONS: dict[str, Callable[[str], dict]] = {
    "stdio_cases": stdio_cases, "pty_spawn_over_socket": pty_spawn_over_socket,
    "env_cases": env_cases, "privileged_execs": privileged_execs,
}

if __name__ == "__main__":
    action, directory = sys.argv[1:3]
    print(json.dumps({"pid": os.getpid(), **ACTIONS[action](directory)}), flush=True)
