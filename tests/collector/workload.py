"""What a traced test process does, one action per run; prints JSON of what it did.

Run inside a tracked tree (``casa-test-root -c 'exec python workload.py ACTION ARGS'``) so the
test can compare the collector's events with the facts printed here (fds, ports, pids).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
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


SYS_OPENAT2 = 437                      # the same number on every architecture
SYS_OPEN = {"x86_64": 2}.get(platform.machine())   # arm64 has no open(2)
RESOLVE_BENEATH = 0x08


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _syscall(*args: object) -> int:
    """libc syscall(2); -errno on failure, like the kernel's return value."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ret = libc.syscall(*args)
    return -ctypes.get_errno() if ret < 0 else ret


def open_calls(directory: str) -> dict:
    """One call of each open syscall the collector traces, with a dirfd, flags and mode to check."""
    base = os.fsencode(directory)
    dfd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    done = []
    fd = os.open(b"via-openat", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dfd)
    done.append(["openat", "via-openat", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dfd, fd])
    for name, flags, mode, resolve in ((b"via-openat2", os.O_RDWR | os.O_CREAT, 0o640, 0),
                                       (b"../escape", os.O_RDONLY, 0, RESOLVE_BENEATH)):
        how = OpenHow(flags, mode, resolve)
        ret = _syscall(SYS_OPENAT2, dfd, name, ctypes.byref(how), ctypes.sizeof(how))
        done.append(["openat2", name.decode(), flags, mode, dfd, ret])
    if SYS_OPEN is not None:
        path = base + b"/via-open"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        done.append(["open", path.decode(), flags, 0o604, -100, _syscall(SYS_OPEN, path, flags, 0o604)])
        missing = base + b"/missing/x"
        done.append(["open", missing.decode(), os.O_RDONLY, 0, -100, _syscall(SYS_OPEN, missing, os.O_RDONLY, 0)])
    assert done[2][5] == -errno.EXDEV, done   # RESOLVE_BENEATH refused ../
    return {"calls": done}


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
           "threads": threads, "deleted": deleted, "open_calls": open_calls}

if __name__ == "__main__":
    result = ACTIONS[sys.argv[1]](*sys.argv[2:])
    print(json.dumps({"pid": os.getpid(), **result}), flush=True)
