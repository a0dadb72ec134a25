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
from collector.decode import (EV_CONNECT, EV_EXEC, EV_EXIT, EV_FORK, EV_OPEN, HEADER, HEADER_SIZE,
                              ST_ARGV_FLAT, ST_ARGV_TRUNCATED, ST_CAPS_VALID, ST_EXE_DELETED,
                              ST_EXE_RESOLVED, ST_PROVISIONAL, DecodeError, decode, event_struct)

MAX_ARGS, MAX_ARG_LEN, MAX_PATH_LEN = 4, 32, 256
BOOT = 1_700_000_000_000_000_000


def record(kind: int, *, sc: int = 0, flags: int = 0, cap: int = 0, tgid: int = 100, tid: int = 101,
           ppid: int = 1, uid: int = 1000, root: int = 100, depth: int = 2, ret: int = 0,
           dirfd: int = -100, mode: int = 0, exit_code: int = 0, child: int = 0, seccomp: int = -1,
           family: int = 0, port: int = 0, addr: bytes = b"", argc: int = 0, status: int = 0,
           comm: bytes = b"bash", new_comm: bytes = b"", path: bytes = b"", exe: bytes = b"",
           argv: bytes = b"") -> bytes:
    head = HEADER.pack(5_000, flags, cap, kind, sc, tgid, tid, ppid, uid, root, depth, ret, dirfd,
                       mode, exit_code, child, seccomp, family, port, addr.ljust(16, b"\0"), argc,
                       len(path) + 1 if path else 0, status, comm, new_comm)
    if kind != EV_EXEC:
        return head + (path + b"\0" if path else b"")
    return (head + path.ljust(MAX_PATH_LEN, b"\0") + exe.ljust(256, b"\0")
            + argv.ljust(MAX_ARGS * MAX_ARG_LEN, b"\0"))


def dec(raw: bytes):
    return decode(raw, BOOT, MAX_ARGS, MAX_ARG_LEN, MAX_PATH_LEN)


def test_open_event_exact():
    d = dec(record(EV_OPEN, sc=3, flags=0x241, mode=0o644, ret=3, dirfd=7, path=b"out"))
    assert d.event == {"kind": "open", "ts_ns": BOOT + 5_000, "tgid": 100, "tid": 101, "ppid": 1,
                       "uid": 1000, "comm": "bash", "root": 100, "syscall": "openat",
                       "path": "out", "flags": 0x241, "mode": 0o644, "ret": 3, "dirfd": 7}
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
    assert len(documented) >= 25
    assert {name: getattr(cls, name).offset for name in documented} == documented
    assert cls.path.offset == HEADER_SIZE == 144
    assert re.search(r"#define EVENT_HEADER_SIZE 144\b", EVENTS_H.read_text())
    assert ctypes.sizeof(cls) == 144 + 4096 + 256 + 16 * 128


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
