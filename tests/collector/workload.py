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


# ---- paths resolved in the kernel (tests/collector/test_paths_live.py) -------------------

W_CREAT = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def _try_open(path: bytes | str, flags: int = os.O_RDONLY, dir_fd: int | None = None) -> int:
    """os.open that returns -errno instead of raising, like the kernel's return value."""
    try:
        fd = os.open(path, flags, 0o600, dir_fd=dir_fd)
    except OSError as exc:
        return -exc.errno
    os.close(fd)
    return fd


def dirfd_errors(directory: str) -> dict:
    """openat against a dirfd that is a regular file (ENOTDIR) and one that is not open (EBADF)."""
    reg = os.open(os.path.join(directory, "regular"), W_CREAT, 0o600)
    closed = 1000
    return {"regular_fd": reg, "not_dir": _try_open("x", dir_fd=reg),
            "bad_fd": _try_open("y", dir_fd=closed)}


def deep(directory: str, name_len: str, count: str) -> dict:
    """mkdir + chdir step by step (a cwd longer than PATH_MAX is fine), then create "f"."""
    os.chdir(directory)
    for i in range(int(count)):
        name = (b"%02d" % i) + b"d" * (int(name_len) - 2)
        os.mkdir(name)
        os.chdir(name)
    return {"ret": _try_open("f", W_CREAT)}


def deleted_cwd(directory: str) -> dict:
    """Open a relative path after the cwd was removed (getcwd fails: ENOENT)."""
    os.mkdir(directory)
    os.chdir(directory)
    os.rmdir(directory)
    return {"ret": _try_open("x", W_CREAT)}


def chroot(directory: str) -> dict:
    """Relative and absolute opens inside a chroot: the process's own root bounds the walk."""
    os.makedirs(os.path.join(directory, "sub"), exist_ok=True)
    os.chroot(directory)
    os.chdir("/sub")
    return {"rel": _try_open("f", W_CREAT), "abs": _try_open("/sub/g", W_CREAT)}


def long_paths(directory: str) -> dict:
    """Absolute opens of 4094, 4095 and 5000 bytes, execs of 4095 and 5000 bytes."""
    base = directory.rstrip("/") + "/"
    out: dict[str, int] = {}
    for n in (4094, 4095, 5000):
        out[f"open{n}"] = _try_open(base + "a" * (n - len(base)))
    for n in (4095, 5000):
        try:
            os.execv(base + "b" * (n - len(base)), ["x"])
        except OSError as exc:
            out[f"exec{n}"] = -exc.errno
    return out


def identity(directory: str) -> dict:
    """Write an ELF, run it through a symlink and a hard link: one inode throughout."""
    import subprocess
    payload = os.path.join(directory, "payload")
    shutil.copyfile("/bin/true", payload)
    os.chmod(payload, 0o755)
    os.symlink(payload, os.path.join(directory, "link"))
    os.link(payload, os.path.join(directory, "hard"))
    for name in ("link", "hard"):
        subprocess.run([os.path.join(directory, name)], check=True)
    st = os.stat(payload)
    return {"ino": st.st_ino, "dev": st.st_dev}


SYS_EXECVEAT = {"x86_64": 322, "aarch64": 281}.get(platform.machine())


def execveat_dirfd(directory: str) -> dict:
    """execveat(dirfd, "payload") with a directory fd opened O_CLOEXEC (gone after the exec)."""
    shutil.copyfile("/bin/true", os.path.join(directory, "payload"))
    os.chmod(os.path.join(directory, "payload"), 0o755)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    argv = (ctypes.c_char_p * 2)(b"payload", None)
    envp = (ctypes.c_char_p * 1)(None)
    sys.stdout.flush()
    return {"ret": _syscall(SYS_EXECVEAT, dfd, b"payload", argv, envp, 0)}


def fexecve_file(path: str) -> dict:
    """fexecve of a regular file: execveat(fd, "", AT_EMPTY_PATH), the fd's own file runs."""
    shutil.copyfile("/bin/true", path)
    os.chmod(path, 0o755)
    fd = os.open(path, os.O_RDONLY)
    sys.stdout.flush()
    os.execve(fd, ["payload"], {})
    return {}


ACTIONS = {"write": write, "connect": connect, "opens": opens, "memfd": memfd, "odd": odd,
           "threads": threads, "deleted": deleted, "open_calls": open_calls,
           "dirfd_errors": dirfd_errors, "deep": deep, "deleted_cwd": deleted_cwd, "chroot": chroot,
           "long_paths": long_paths, "identity": identity, "execveat_dirfd": execveat_dirfd,
           "fexecve_file": fexecve_file}

if __name__ == "__main__":
    result = ACTIONS[sys.argv[1]](*sys.argv[2:])
    print(json.dumps({"pid": os.getpid(), **result}), flush=True)
