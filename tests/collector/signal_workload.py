"""One action per run that makes the syscalls of the detection signals; prints JSON of what it did.

    python signal_workload.py ACTION DIR [ARGS...]

Run inside a tracked tree (the live tests) or outside any (the untracked test, which runs every
action and expects no event at all). Every action writes only under DIR, talks only to
127.0.0.1/::1 on ports it bound itself, and stops by itself. Return values are the kernel's
(-errno on failure), so a test can compare them with the events' ``ret``.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
MACHINE = platform.machine()
# syscall numbers not in the os module (the same on x86-64 and arm64 unless a table says otherwise)
SYS_FCHMODAT2 = 452
SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276}[MACHINE]
SYS_PTRACE = {"x86_64": 101, "aarch64": 117}[MACHINE]
SYS_PROCESS_VM_READV = {"x86_64": 310, "aarch64": 270}[MACHINE]
SYS_PROCESS_VM_WRITEV = {"x86_64": 311, "aarch64": 271}[MACHINE]
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}[MACHINE]
SYS_SETRESUID = {"x86_64": 117, "aarch64": 147}[MACHINE]
SYS_SETRESGID = {"x86_64": 119, "aarch64": 149}[MACHINE]
SYS_SETREUID = {"x86_64": 113, "aarch64": 145}[MACHINE]
SYS_SETREGID = {"x86_64": 114, "aarch64": 143}[MACHINE]
SYS_SETUID = {"x86_64": 105, "aarch64": 146}[MACHINE]
SYS_SETGID = {"x86_64": 106, "aarch64": 144}[MACHINE]
PTRACE_PEEKDATA, PTRACE_ATTACH, PTRACE_DETACH = 2, 16, 17
RENAME_NOREPLACE = 1
AT_REMOVEDIR = 0x200
CAP_V3 = 0x20080522


def sys_call(*args: object) -> int:
    """libc syscall(2) returning -errno on failure, like the kernel. syscall() is variadic: a
    Python int would go as a 32-bit int with undefined upper register bits, so ints are longs."""
    ret = LIBC.syscall(*(ctypes.c_long(a) if isinstance(a, int) else a for a in args))
    return -ctypes.get_errno() if ret < 0 else ret


def _b(path: str) -> bytes:
    return os.fsencode(path)


# ---- files ----------------------------------------------------------------------------------

def chmods(d: str) -> dict:
    """chmod (relative, setuid bit), fchmod, fchmodat with a dirfd, fchmodat2, a failing chmod."""
    os.chdir(d)
    for name in ("a", "b", "c", "e"):
        with open(name, "w"):
            pass
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.open("b", os.O_RDONLY)
    out = {"dfd": dfd, "fd": fd}
    out["chmod"] = sys_call(90, b"a", 0o4755) if MACHINE == "x86_64" else None   # chmod(2): x86-64
    out["fchmod"] = sys_call({"x86_64": 91, "aarch64": 52}[MACHINE], fd, 0o2750)
    out["fchmodat"] = sys_call({"x86_64": 268, "aarch64": 53}[MACHINE], dfd, b"c", 0o700)
    out["fchmodat2"] = sys_call(SYS_FCHMODAT2, dfd, b"e", 0o755, 0)
    out["missing"] = sys_call({"x86_64": 268, "aarch64": 53}[MACHINE], -100, _b(d + "/nope"), 0o777)
    return out


def unlinks(d: str) -> dict:
    """unlink, unlinkat(dirfd), unlinkat(AT_REMOVEDIR), rmdir, and a failing unlink."""
    os.chdir(d)
    for name in ("u1", "u2"):
        with open(name, "w"):
            pass
    os.mkdir("d1")
    os.mkdir("d2")
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    out = {"dfd": dfd}
    out["unlink"] = sys_call(87, b"u1") if MACHINE == "x86_64" else None
    out["unlinkat"] = sys_call({"x86_64": 263, "aarch64": 35}[MACHINE], dfd, b"u2", 0)
    out["removedir"] = sys_call({"x86_64": 263, "aarch64": 35}[MACHINE], dfd, b"d1", AT_REMOVEDIR)
    out["rmdir"] = sys_call(84, b"d2") if MACHINE == "x86_64" else None
    out["missing"] = sys_call({"x86_64": 263, "aarch64": 35}[MACHINE], -100, b"gone", 0)
    return out


def renames(d: str) -> dict:
    """rename (relative to the cwd), renameat (two dirfds), renameat2 (NOREPLACE, failing), and
    renameat2 of a non-UTF-8 name to one with a newline."""
    os.chdir(d)
    os.mkdir("sub")
    for name in ("r1", "r2", "r3", "taken"):
        with open(name, "w"):
            pass
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    sub = os.open(d + "/sub", os.O_RDONLY | os.O_DIRECTORY)
    out = {"dfd": dfd, "sub": sub}
    out["rename"] = sys_call(82, b"r1", b"sub/../r1-new") if MACHINE == "x86_64" else None
    out["renameat"] = sys_call({"x86_64": 264, "aarch64": 38}[MACHINE], dfd, b"r2", sub, b"r2-new")
    out["noreplace"] = sys_call(SYS_RENAMEAT2, dfd, b"r3", dfd, b"taken", RENAME_NOREPLACE)
    with open(b"odd-\xff", "w"):
        pass
    out["odd"] = sys_call(SYS_RENAMEAT2, -100, b"odd-\xff", -100, b"new\nline", 0)
    return out


def truncates(d: str) -> dict:
    """truncate(relative path), ftruncate(fd), an O_TRUNC open, ftruncate of an unlinked file."""
    os.chdir(d)
    for name in ("t1", "t2", "t3", "t4"):
        with open(name, "w") as f:
            f.write("x" * 100)
    out = {}
    out["truncate"] = sys_call({"x86_64": 76, "aarch64": 45}[MACHINE], b"t1", 7)
    fd = os.open("t2", os.O_WRONLY)
    out["fd"] = fd
    out["ftruncate"] = sys_call({"x86_64": 77, "aarch64": 46}[MACHINE], fd, 0)
    out["otrunc"] = os.open("t3", os.O_WRONLY | os.O_TRUNC)
    gone = os.open("t4", os.O_WRONLY)
    os.unlink("t4")
    out["gone_fd"] = gone
    out["gone"] = sys_call({"x86_64": 77, "aarch64": 46}[MACHINE], gone, 1)
    return out


# ---- processes --------------------------------------------------------------------------------

def memfd(d: str, name: str) -> dict:
    fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    return {"fd": fd, "flags": os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING}


def _sleeper() -> int:
    """A child that waits to be looked at (killed by the caller)."""
    pid = os.fork()
    if pid == 0:
        os.environ["CASA_FAKE_SECRET"] = "not-a-real-secret"
        time.sleep(30)
        os._exit(0)
    time.sleep(0.1)
    return pid


def foreign(d: str) -> dict:
    """ptrace attach/peek/detach, process_vm_readv/writev, opens of /proc/<pid>/{mem,environ,maps}."""
    pid = _sleeper()
    out: dict = {"target": pid}
    try:
        buf = ctypes.create_string_buffer(16)
        local = struct.pack("PN", ctypes.addressof(buf), 16)
        remote = struct.pack("PN", ctypes.addressof(buf), 16)   # same address space layout: forked
        out["vm_readv"] = sys_call(SYS_PROCESS_VM_READV, pid, local, 1, remote, 1, 0)
        out["vm_writev"] = sys_call(SYS_PROCESS_VM_WRITEV, pid, local, 1, remote, 1, 0)
        for name in ("environ", "maps", "mem"):
            try:
                os.close(os.open(f"/proc/{pid}/{name}", os.O_RDONLY))
                out[name] = 0
            except OSError as exc:
                out[name] = -exc.errno
        pdir = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY)
        os.close(os.open("environ", os.O_RDONLY, dir_fd=pdir))
        out["attach"] = sys_call(SYS_PTRACE, PTRACE_ATTACH, pid, 0, 0)
        os.waitpid(pid, 0)
        word = ctypes.c_long(0)                  # the raw syscall stores the word at `data`
        out["peek"] = sys_call(SYS_PTRACE, PTRACE_PEEKDATA, pid, ctypes.addressof(buf), ctypes.byref(word))
        out["detach"] = sys_call(SYS_PTRACE, PTRACE_DETACH, pid, 0, 0)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return out


# ---- network ----------------------------------------------------------------------------------

def dns_query(name: str, qtype: int = 16) -> bytes:
    labels = b"".join(bytes([len(p)]) + p for p in name.encode().split(b".") if p)
    return struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack(">HH", qtype, 1)


def sends(d: str, name: str = "") -> dict:
    """UDP sends to a receiver of our own: sendto (DNS query, IPv4), sendmsg (IPv6, not DNS),
    sendmmsg (two DNS queries), a connected socket's DNS query (send) and non-DNS datagram,
    an AF_UNIX datagram and a TCP send (neither reported)."""
    name = name or os.environ["CASA_TEST_QNAME"]      # from the environment: not in any event
    out: dict = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx4, \
         socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as rx6, \
         socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx, \
         socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as tx6:
        rx4.bind(("127.0.0.1", 0))
        rx6.bind(("::1", 0))
        p4, p6 = rx4.getsockname()[1], rx6.getsockname()[1]
        out.update(port4=p4, port6=p6)
        q = dns_query(name)
        out["sendto"] = tx.sendto(q, ("127.0.0.1", p4))
        out["sendto_len"] = len(q)
        out["sendmsg"] = tx6.sendmsg([b"hello ", b"world"], [], 0, ("::1", p6))
        msgs = [dns_query("one." + name, 1), dns_query("two." + name, 28)]
        out["sendmmsg"] = _sendmmsg(tx.fileno(), msgs, p4)
        out["sendmmsg_bytes"] = sum(len(m) for m in msgs)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as conn:
            conn.connect(("127.0.0.1", p4))
            out["connected_dns"] = conn.send(dns_query("c." + name))
            out["connected_other"] = conn.send(b"\xff" * 40)
    out["unix"] = _unix_dgram(d)
    out["tcp"] = _tcp_send()
    return out


def _sendmmsg(fd: int, msgs: list[bytes], port: int) -> int:
    """sendmmsg(2) through ctypes: each message to 127.0.0.1:port."""
    addr = struct.pack("<HH4s8x", socket.AF_INET, socket.htons(port), socket.inet_aton("127.0.0.1"))
    name = ctypes.create_string_buffer(addr, len(addr))
    bufs = [ctypes.create_string_buffer(m, len(m)) for m in msgs]
    iovs = [struct.pack("PN", ctypes.addressof(b), len(m)) for b, m in zip(bufs, msgs)]
    iov_bufs = [ctypes.create_string_buffer(i, len(i)) for i in iovs]
    vec = b"".join(struct.pack("PI4xPNPNI4xI4x", ctypes.addressof(name), len(addr), ctypes.addressof(ib),
                               1, 0, 0, 0, 0) for ib in iov_bufs)
    vbuf = ctypes.create_string_buffer(vec, len(vec))
    return sys_call({"x86_64": 307, "aarch64": 269}[MACHINE], fd, vbuf, len(msgs), 0)


def _unix_dgram(d: str) -> int:
    path = os.path.join(d, "u.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as rx, \
         socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as tx:
        rx.bind(path)
        return tx.sendto(dns_query("unix.example"), path)


def _tcp_send() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        with socket.create_connection(srv.getsockname()) as c:
            a, _ = srv.accept()
            with a:
                return c.send(dns_query("tcp.example"))


def listens(d: str) -> dict:
    """bind + listen: IPv4 on an ephemeral port, IPv6 on ::, a listen without bind (autobind)."""
    out: dict = {}
    s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s4.bind(("127.0.0.1", 0))
    out["port4"] = s4.getsockname()[1]
    s4.listen(3)
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s6.bind(("::", 0))
    out["port6"] = s6.getsockname()[1]
    s6.listen(7)
    s0 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s0.listen(1)                                      # the kernel binds 0.0.0.0:<ephemeral>
    out["port0"] = s0.getsockname()[1]
    u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    u.bind(os.path.join(d, "l.sock"))
    u.listen(1)
    for s in (s4, s6, s0, u):
        s.close()
    return out


def sockets(d: str) -> dict:
    """Raw and packet sockets (root), and sockets that are not reported (UDP, netlink raw)."""
    out: dict = {}
    for key, fam, typ, proto in (("raw_icmp", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
                                 ("packet", socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003)),
                                 ("packet_dgram", socket.AF_PACKET, socket.SOCK_DGRAM, 0),
                                 ("udp", socket.AF_INET, socket.SOCK_DGRAM, 0),
                                 ("netlink", socket.AF_NETLINK, socket.SOCK_RAW, 0)):
        try:
            s = socket.socket(fam, typ | socket.SOCK_CLOEXEC, proto)
            out[key] = s.fileno()
            s.close()
        except OSError as exc:
            out[key] = -exc.errno
    return out


# ---- privilege ----------------------------------------------------------------------------------

def setids(d: str) -> dict:
    """As root: drop the euid to nobody and take it back (saved uid 0), the same for gids,
    then a setuid that fails once the process has given everything up."""
    out = {}
    out["setresgid"] = sys_call(SYS_SETRESGID, -1, 65534, -1)
    out["setregid"] = sys_call(SYS_SETREGID, -1, 0)
    out["setgid"] = sys_call(SYS_SETGID, 0)
    out["setresuid"] = sys_call(SYS_SETRESUID, -1, 65534, -1)
    out["setreuid"] = sys_call(SYS_SETREUID, -1, 0)
    out["setuid_nobody"] = sys_call(SYS_SETUID, 65534)        # all three uids: no way back
    out["setuid_root"] = sys_call(SYS_SETUID, 0)              # EPERM
    return out


def capsets(d: str) -> dict:
    """capset: keep only CAP_NET_RAW (13) and CAP_SYS_PTRACE (19), then ask for CAP_SYS_ADMIN back."""
    keep = (1 << 13) | (1 << 19)
    admin = (1 << 21) | keep
    return {"keep": keep, "admin": admin, "drop": _capset(keep, keep), "raise": _capset(admin, admin)}


def _capset(effective: int, permitted: int) -> int:
    hdr = ctypes.create_string_buffer(struct.pack("II", CAP_V3, 0), 8)
    data = ctypes.create_string_buffer(struct.pack("6I", effective, permitted, 0, 0, 0, 0), 24)
    return sys_call(SYS_CAPSET, hdr, data)


ACTIONS: dict[str, Callable[..., dict]] = {
    "chmods": chmods, "unlinks": unlinks, "renames": renames, "truncates": truncates,
    "memfd": memfd, "foreign": foreign, "sends": sends, "listens": listens, "sockets": sockets,
    "setids": setids, "capsets": capsets,
}
# what the untracked test runs (every syscall family, with harmless arguments)
UNTRACKED = [("chmods",), ("unlinks",), ("renames",), ("truncates",), ("memfd", "untracked"),
             ("foreign",), ("sends", "untracked.example"), ("listens",), ("sockets",),
             ("setids",), ("capsets",)]

if __name__ == "__main__":
    action, directory, *rest = sys.argv[1:]
    result = ACTIONS[action](directory, *rest)
    print(json.dumps({"pid": os.getpid(), **result}), flush=True)
