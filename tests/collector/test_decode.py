"""collector/decode.py: records built byte by byte decode into exact bus events; the layout the
decoder assumes equals bpf/events.h (comments, EVENT_HEADER_SIZE) and the class bcc builds."""

from __future__ import annotations

import ctypes
import os
import re
import socket

import pytest

import bus
from bpf import EVENTS_H
from collector.decode import (DIR_OK, EV_CONNECT, EV_EXEC, EV_EXIT, EV_FORK, EV_OPEN, HEADER,
                              HEADER_SIZE, ST_ARGV_FLAT, ST_ARGV_TRUNCATED, ST_CAPS_VALID,
                              ST_EXE_DELETED, ST_EXE_RESOLVED, ST_IDENTITY, ST_PATH_TRUNCATED,
                              ST_PROVISIONAL, DecodeError, decode, event_struct, layout)

MAX_ARGS, MAX_ARG_LEN, MAX_PATH_LEN = 4, 32, 256
BOOT = 1_700_000_000_000_000_000


def record(kind: int, *, sc: int = 0, flags: int = 0, cap: int = 0, tgid: int = 100, tid: int = 101,
           ppid: int = 1, uid: int = 1000, root: int = 100, depth: int = 2, ret: int = 0,
           dirfd: int = -100, mode: int = 0, exit_code: int = 0, child: int = 0, seccomp: int = -1,
           family: int = 0, port: int = 0, addr: bytes = b"", argc: int = 0, status: int = 0,
           comm: bytes = b"bash", new_comm: bytes = b"", path: bytes = b"", exe: bytes = b"",
           argv: bytes = b"", dirs: tuple[bytes, ...] = (), dir_error: int = 0, ino: int = 0,
           dev: int = 0, path2: bytes | None = None, dirs2: tuple[bytes, ...] = (),
           dir2_error: int = 0, val: tuple[int, int, int, int] = (0, 0, 0, 0),
           fd_info: bytes = b"", ld_env: bytes = b"", payload: bytes | None = None) -> bytes:
    """A record as the kernel writes it; ``dirs`` are base-directory names, root first (the
    record holds them leaf first), which also sets dir_error to DIR_OK unless given (``dirs2``
    and ``dir2_error``: a rename's new path). ``payload`` replaces the path area (memfd, send)."""
    names = b"".join(n + b"\0" for n in reversed(dirs))
    names2 = b"".join(n + b"\0" for n in reversed(dirs2))
    if dirs and not dir_error:
        dir_error = DIR_OK
    if dirs2 and not dir2_error:
        dir2_error = DIR_OK
    if payload is not None:
        path_len = len(payload)
    else:
        path_len = len(path) + 1 if path or kind in (EV_OPEN, *range(6, 10)) else 0
    path2_len = len(path2) + 1 if path2 is not None else 0
    head = HEADER.pack(5_000, flags, cap, kind, sc, tgid, tid, ppid, uid, root, depth, ret, dirfd,
                       mode, exit_code, child, seccomp, family, port, addr.ljust(16, b"\0"), argc,
                       path_len, status, comm, new_comm, len(names), dir_error, ino, dev,
                       path2_len, len(names2), dir2_error, *val)
    if payload is not None:
        return head + payload
    if kind != EV_EXEC:
        tail = path + b"\0" if path_len else b""
        return head + tail + names + (path2 + b"\0" + names2 if path2 is not None else b"")
    lay = layout(MAX_ARGS, MAX_ARG_LEN, MAX_PATH_LEN)
    body = bytearray(lay.dir)
    body[:len(head)] = head
    body[HEADER_SIZE:HEADER_SIZE + len(path)] = path
    body[lay.exe:lay.exe + len(exe)] = exe
    body[lay.argv:lay.argv + len(argv)] = argv
    body[lay.fd_info:lay.fd_info + len(fd_info)] = fd_info
    body[lay.ld_env:lay.ld_env + len(ld_env)] = ld_env
    return bytes(body) + names


def dec(raw: bytes):
    return decode(raw, BOOT, MAX_ARGS, MAX_ARG_LEN, MAX_PATH_LEN)


def test_open_event_exact():
    d = dec(record(EV_OPEN, sc=3, flags=0x241, mode=0o644, ret=3, dirfd=7, path=b"out", dirs=(b"w",)))
    assert d.event == {"kind": "open", "ts_ns": BOOT + 5_000, "tgid": 100, "tid": 101, "ppid": 1,
                       "uid": 1000, "comm": "bash", "root": 100, "syscall": "openat",
                       "path": "out", "flags": 0x241, "mode": 0o644, "ret": 3, "dirfd": 7,
                       "abspath": "/w/out"}
    assert bus.validate_event(d.event) == []
    assert d.depth == 2 and not d.provisional


def test_non_utf8_path_is_lossless():
    raw_path = b"/tmp/\xff\xfe\nx"
    d = dec(record(EV_OPEN, path=raw_path))
    assert bus.to_bytes(d.event["path"]) == raw_path
    assert bus.to_wire(d.event["path"]) == raw_path


@pytest.mark.parametrize("family,addr,text", [
    (socket.AF_INET, socket.inet_pton(socket.AF_INET, "10.1.2.3"), "10.1.2.3"),
    (socket.AF_INET6, socket.inet_pton(socket.AF_INET6, "2001:db8::1"), "2001:db8::1"),
])
def test_connect_event(family, addr, text):
    d = dec(record(EV_CONNECT, sc=6, family=family, port=443, addr=addr, ret=-115))
    assert {k: d.event[k] for k in ("kind", "family", "addr", "port", "ret")} == {
        "kind": "connect", "family": family, "addr": text, "port": 443, "ret": -115}
    assert bus.validate_event(d.event) == []


def test_exit_and_fork_events():
    assert dec(record(EV_EXIT, exit_code=3 << 8)).event["exit_code"] == 768
    assert dec(record(EV_FORK, child=4242)).event["child_tgid"] == 4242


def slots(*items: bytes) -> bytes:
    return b"".join(i.ljust(MAX_ARG_LEN, b"\0") for i in items)


def test_exec_event_with_argv_slots_and_caps():
    d = dec(record(EV_EXEC, sc=1, argc=3, status=ST_CAPS_VALID | ST_ARGV_TRUNCATED, cap=0x3F,
                   seccomp=2, path=b"/bin/ls", new_comm=b"ls", argv=slots(b"ls", b"-l", b"/tmp")))
    e = d.event
    assert (e["syscall"], e["path"], e["exe"], e["argv"], e["argv_truncated"], e["cap_eff"], e["seccomp"]) == (
        "execve", "/bin/ls", "/bin/ls", ["ls", "-l", "/tmp"], True, 0x3F, 2)
    assert d.new_comm == "ls"
    assert bus.validate_event(e) == []


def test_exec_without_caps_reports_none():
    e = dec(record(EV_EXEC, sc=1, argc=1, path=b"/x", argv=slots(b"x"))).event
    assert e["cap_eff"] is None and e["seccomp"] is None and e["argv_truncated"] is False


@pytest.mark.parametrize("status,exe", [(ST_EXE_RESOLVED, "memfd:payload"),
                                        (ST_EXE_RESOLVED | ST_EXE_DELETED, "memfd:payload (deleted)")])
def test_fd_exec_uses_the_resolved_name(status, exe):
    e = dec(record(EV_EXEC, sc=2, flags=0x1000, dirfd=3, status=status, exe=b"memfd:payload",
                   argv=slots(b"p"), argc=1)).event
    assert (e["syscall"], e["path"], e["exe"], e["dirfd"], e["flags"]) == ("execveat", "", exe, 3, 0x1000)


def test_flat_argv_of_a_provisional_root():
    area = b"node\0/opt/openclaw\0agent\0-m\0hi\0"
    d = dec(record(EV_EXEC, argc=len(area), status=ST_ARGV_FLAT | ST_PROVISIONAL, path=b"/usr/bin/node",
                   argv=area))
    assert d.event["argv"] == ["node", "/opt/openclaw", "agent", "-m", "hi"]
    assert d.provisional


@pytest.mark.parametrize("raw,message", [
    (b"\0" * 10, "shorter than"),
    (record(EV_OPEN)[:24] + (99).to_bytes(4, "little") + record(EV_OPEN)[28:], "unknown kind 99"),
])
def test_bad_records_raise_decode_error(raw, message):
    with pytest.raises(DecodeError, match=message):
        dec(raw)


def _header_comment_offsets() -> dict[str, int]:
    """`/*  84 connect: ...` comments of events.h: field name -> documented offset."""
    out = {}
    for m in re.finditer(r"^\s+\w[\w ]*?\b(\w+)(?:\[[^\]]*\])?;\s+/\*\s+(\d+) ", EVENTS_H.read_text(), re.M):
        out[m.group(1)] = int(m.group(2))
    return out


def test_ctypes_mirror_matches_events_h_and_header_struct():
    cls = event_struct(16, 128, 4096)
    documented = _header_comment_offsets()
    assert len(documented) >= 34
    assert {name: getattr(cls, name).offset for name in documented} == documented
    assert cls.path.offset == HEADER_SIZE == 200
    assert re.search(r"#define EVENT_HEADER_SIZE 200\b", EVENTS_H.read_text())
    fd_info = 3 * 8 + 48 + 6 + 6 + 3 + 3 + 6 * 2 + 6 * 256
    unpadded = 200 + 4096 + 256 + 16 * 128 + fd_info + 4096 + 256
    assert ctypes.sizeof(cls) == (unpadded + 7) // 8 * 8       # u64 members: 8-byte alignment


@pytest.mark.root
def test_bcc_builds_the_same_struct_from_events_h():
    from bcc.table import _get_event_class

    from collector.loader import Limits, load
    b = load(Limits(max_args=MAX_ARGS, max_arg_len=MAX_ARG_LEN, max_path_len=MAX_PATH_LEN,
                    ringbuf_pages=16), os.getpid(), set())
    try:
        theirs = _get_event_class(b[b"events"])
        ours = event_struct(MAX_ARGS, MAX_ARG_LEN, MAX_PATH_LEN)
        assert ctypes.sizeof(theirs) == ctypes.sizeof(ours)
        assert [(n, getattr(theirs, n).offset, getattr(theirs, n).size) for n, _ in theirs._fields_] == \
               [(n, getattr(ours, n).offset, getattr(ours, n).size) for n, _ in ours._fields_]
    finally:
        b.cleanup()


# ---- paths and identity (docs/bus.md §5.9) ----------------------------------------------------

def test_relative_open_gets_the_kernel_base_joined_and_folded():
    d = dec(record(EV_OPEN, sc=3, path=b"./.x86", dirs=(b"tmp", b"x", b"d")))
    assert d.event["path"] == "./.x86" and d.event["abspath"] == "/tmp/x/d/.x86"
    assert bus.validate_event(d.event) == []
    d = dec(record(EV_OPEN, sc=3, path=b"../d/../e//p", dirs=(b"tmp", b"x", b"d")))
    assert d.event["abspath"] == "/tmp/x/e/p"


def test_relative_path_in_the_root_directory():
    assert dec(record(EV_OPEN, path=b"etc/passwd", dir_error=DIR_OK)).event["abspath"] == "/etc/passwd"


def test_odd_directory_names_stay_lossless():
    d = dec(record(EV_OPEN, path=b"p\xfe.sh", dirs=(b"tmp", b"bad-\xff", b"new\nline")))
    assert bus.to_bytes(d.event["abspath"]) == b"/tmp/bad-\xff/new\nline/p\xfe.sh"
    assert bus.to_wire(d.event["abspath"]) == b"/tmp/bad-\xff/new\nline/p\xfe.sh"


@pytest.mark.parametrize("error", [2, 3, 4, 5, 6, 7, 8])
def test_unresolved_base_gives_an_empty_abspath_and_the_reason(error):
    d = dec(record(EV_OPEN, path=b"p.sh", dir_error=error))
    assert d.event["abspath"] == "" and d.event["path"] == "p.sh"
    assert d.dir_error == error
    assert bus.validate_event(d.event) == []


def test_absolute_paths_get_abspath_only_when_not_normal():
    assert "abspath" not in dec(record(EV_OPEN, path=b"/tmp/d/p.sh")).event
    d = dec(record(EV_OPEN, path=b"/tmp//d/../d/./p.sh"))
    assert d.event["abspath"] == "/tmp/d/p.sh" and d.dir_error == 0


def test_unreadable_path_is_unresolved():
    raw = bytearray(record(EV_OPEN, ret=-14, path=b"x"))
    raw[102:104] = (0).to_bytes(2, "little")          # path_len 0: the user string was unreadable
    d = dec(bytes(raw[:HEADER_SIZE]))
    assert d.event["path"] == "" and d.event["abspath"] == "" and d.dir_error == -1


def test_relative_exec_reads_the_dir_area_after_argv():
    d = dec(record(EV_EXEC, sc=1, path=b"./p.sh", argc=1, argv=slots(b"./p.sh"),
                   dirs=(b"tmp", b"x", b"d")))
    assert (d.event["path"], d.event["exe"], d.event["abspath"]) == ("./p.sh", "./p.sh", "/tmp/x/d/p.sh")
    assert d.event["argv"] == ["./p.sh"]


def test_fd_exec_of_an_empty_path_resolves_to_the_file_itself():
    d = dec(record(EV_EXEC, sc=2, flags=0x1000, dirfd=3, status=ST_EXE_RESOLVED, exe=b"p.sh",
                   argv=slots(b"p"), argc=1, dirs=(b"tmp", b"d", b"p.sh")))
    assert (d.event["path"], d.event["exe"], d.event["abspath"]) == ("", "p.sh", "/tmp/d/p.sh")


def test_truncated_path_and_identity():
    dev = (259 << 20) | 3                            # kernel dev_t of 259:3
    d = dec(record(EV_OPEN, path=b"/tmp/aaaa", status=ST_PATH_TRUNCATED | ST_IDENTITY, ino=77, dev=dev,
                   flags=os.O_WRONLY, ret=3))
    assert d.event["path_truncated"] is True
    assert (d.event["ino"], d.event["dev"]) == (77, os.makedev(259, 3))
    assert bus.validate_event(d.event) == []
    plain = dec(record(EV_OPEN, path=b"/tmp/aaaa", ino=77, dev=dev)).event
    assert not {"path_truncated", "ino", "dev", "abspath"} & set(plain)
    e = dec(record(EV_EXEC, sc=1, path=b"/bin/ls", argc=1, argv=slots(b"ls"), status=ST_IDENTITY,
                   ino=5, dev=dev)).event
    assert (e["ino"], e["dev"]) == (5, os.makedev(259, 3))


def test_an_empty_path_is_not_resolved_to_the_cwd():
    d = dec(record(EV_OPEN, ret=-2, path=b""))
    assert (d.event["path"], d.event["abspath"], d.dir_error) == ("", "", -2)
