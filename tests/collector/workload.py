"""What a traced test process does, one action per run; prints JSON of what it did.

Run inside a tracked tree (``casa-test-root -c 'exec python workload.py ACTION ARGS'``) so the
test can compare the collector's events with the facts printed here (fds, ports, pids).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys


def write(path: str) -> dict:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    os.close(fd)
    return {"fd": fd, "flags": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "mode": 0o640}


def connect(family: str, port: str) -> dict:
    fam, addr = (socket.AF_INET, "127.0.0.1") if family == "4" else (socket.AF_INET6, "::1")
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        rc = s.connect_ex((addr, int(port)))
    return {"rc": rc}


def opens(path: str, count: str) -> dict:
    for _ in range(int(count)):
        os.close(os.open(path, os.O_RDONLY))
    return {"count": int(count)}


def memfd(how: str) -> dict:
    fd = os.memfd_create("payload", 0)          # no CLOEXEC: /proc/self/fd/N must still exist
    with open("/bin/true", "rb") as src, os.fdopen(os.dup(fd), "wb") as dst:
        shutil.copyfileobj(src, dst)
    sys.stdout.flush()
    if how == "fd":
        os.execve(fd, ["payload"], {})            # fexecve: execveat(fd, "", AT_EMPTY_PATH)
    os.execv(f"/proc/self/fd/{fd}", ["payload"])
    return {}


def deleted(path: str) -> dict:
    """Exec a file through an fd after unlinking it (a dropper that cleans up after itself)."""
    shutil.copy2("/bin/sleep", path)
    fd = os.open(path, os.O_RDONLY)
    os.unlink(path)
    sys.stdout.flush()
    os.execve(fd, ["victim", "0.5"], {})     # runs long enough for /proc/PID/exe to be read
    return {}


def odd(directory: str) -> dict:
    base = os.fsencode(directory)
    names = [base + b"/bad-\xff\xfe-utf8", base + b"/new\nline"]
    long_dir = base
    for i in range(15):
        long_dir += b"/" + (b"%02d" % i) * 100
    os.makedirs(long_dir)
    names.append(long_dir + b"/end")
    for n in names:
        os.close(os.open(n, os.O_WRONLY | os.O_CREAT, 0o600))
    return {"paths": [n.hex() for n in names]}


def threads(count: str) -> dict:
    """Threads are not processes: no fork events, and one exit when the process ends."""
    import threading
    ts = [threading.Thread(target=os.getpid) for _ in range(int(count))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return {"threads": int(count)}


ACTIONS = {"write": write, "connect": connect, "opens": opens, "memfd": memfd, "odd": odd,
           "threads": threads, "deleted": deleted}

if __name__ == "__main__":
    result = ACTIONS[sys.argv[1]](*sys.argv[2:])
    print(json.dumps({"pid": os.getpid(), **result}), flush=True)
