"""The detection kinds and the exec's new facts, decoded from records built byte by byte
(collector/signals.py, collector/exec_facts.py, collector/dns.py): exact bus events, valid
against bus/events.py."""

from __future__ import annotations

import struct

import pytest

import bus
from collector.decode import DIR_OK, EV_EXEC, HEADER_SIZE, ST_CAPS_VALID
from collector.dns import parse_query, qname_hash
from collector.exec_facts import FD_INFO
from tests.collector.test_decode import BOOT, dec, record, slots

EV_CHMOD, EV_RENAME, EV_TRUNCATE, EV_MEMFD, EV_SEND, EV_SOCKET, EV_SETID, EV_CAPSET = 6, 8, 9, 10, 13, 16, 17, 18
ST_FD_PATH, ST_CONNECTED, ST_NEW_PATH_TRUNCATED = 0x2000, 0x1000, 0x4000
COMMON = {"ts_ns": BOOT + 5_000, "tgid": 100, "tid": 101, "ppid": 1, "uid": 1000, "comm": "bash", "root": 100}


def query(name: bytes, qtype: int = 1, flags: int = 0x0100, qd: int = 1, an: int = 0) -> bytes:
    labels = b"".join(bytes([len(p)]) + p for p in name.split(b".") if p)
    return struct.pack(">HHHHHH", 7, flags, qd, an, 0, 1) + labels + b"\0" + struct.pack(">HH", qtype, 1)


# ---- DNS -------------------------------------------------------------------------------------

def test_a_query_gives_length_hash_and_type_of_the_lower_cased_name():
    q = parse_query(query(b"Data.Exfil.Example", 16))
    assert (q.qname_len, q.qname_hash, q.qtype) == (18, qname_hash(b"data.exfil.example"), 16)
    assert parse_query(query(b"data.exfil.example", 16)).qname_hash == q.qname_hash
    assert parse_query(query(b"other.exfil.example")).qname_hash != q.qname_hash
    assert 0 <= q.qname_hash < 2 ** 63
    assert parse_query(query(b"")).qname_len == 0            # the root name


@pytest.mark.parametrize("payload", [
    query(b"a.example", flags=0x8180),                       # a response (QR 1)
    query(b"a.example", flags=0x2900),                       # opcode UPDATE
    query(b"a.example", qd=2),
    query(b"a.example", an=1),
    query(b"a.example")[:-3],                                # question cut before qtype/qclass
    struct.pack(">HHHHHH", 7, 0x100, 1, 0, 0, 0) + b"\xc0\x0c" + b"\0\1\0\1",   # compression
    struct.pack(">HHHHHH", 7, 0x100, 1, 0, 0, 0) + b"\x05ab",                   # label overflows
    struct.pack(">HHHHHH", 7, 0x100, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\0\0\1\0\1",  # > 255
    b"\x12\x34",
])
def test_what_is_not_a_query_is_not_parsed(payload):
    assert parse_query(payload) is None


# ---- the detection kinds ----------------------------------------------------------------------

def test_fchmod_path_is_the_walked_file_or_its_name():
    d = dec(record(EV_CHMOD, sc=8, mode=0o4755, path=b"x.sh", dirs=(b"tmp", b"d", b"x.sh"),
                   status=ST_FD_PATH, val=(5, 0, 0, 0)))
    assert d.event == {**COMMON, "kind": "chmod", "syscall": "fchmod", "ret": 0, "dirfd": -100,
                       "mode": 0o4755, "flags": 0, "fd": 5, "path": "/tmp/d/x.sh"}
    assert bus.validate_event(d.event) == []
    d = dec(record(EV_CHMOD, sc=8, path=b"x.sh", dir_error=7, status=ST_FD_PATH, val=(5, 0, 0, 0)))
    assert (d.event["path"], d.event["abspath"], d.dir_error) == ("x.sh", "", 7)


def test_rename_decodes_both_paths_and_their_own_errors():
    d = dec(record(EV_RENAME, sc=16, dirfd=3, flags=1, path=b"a", dirs=(b"w",), path2=b"../b",
                   dirs2=(b"w", b"sub"), val=(2 ** 64 - 100, 0, 0, 0)))
    assert d.event == {**COMMON, "kind": "rename", "syscall": "renameat2", "ret": 0, "dirfd": 3,
                       "new_dirfd": -100, "flags": 1, "path": "a", "abspath": "/w/a",
                       "new_path": "../b", "new_abspath": "/w/b"}
    assert bus.validate_event(d.event) == []
    d = dec(record(EV_RENAME, sc=14, path=b"/tmp/a", path2=b"b", dir2_error=5,
                   status=ST_NEW_PATH_TRUNCATED))
    assert (d.event["new_abspath"], d.new_dir_error, d.event["new_path_truncated"]) == ("", 5, True)
    assert "abspath" not in d.event and d.dir_error == 0


def test_truncate_length_is_signed_and_memfd_keeps_odd_names():
    d = dec(record(EV_TRUNCATE, sc=17, path=b"/var/log/x", val=(2 ** 64 - 1, 0, 0, 0), ret=-22))
    assert (d.event["length"], d.event["ret"], d.event["path"]) == (-1, -22, "/var/log/x")
    d = dec(record(EV_MEMFD, sc=19, flags=3, ret=4, payload=b"p\xffx\0"))
    assert bus.to_bytes(d.event["name"]) == b"p\xffx" and d.event["flags"] == 3


def test_send_with_a_dns_payload_never_carries_the_name():
    payload = query(b"secret-token.exfil.example", 16)
    d = dec(record(EV_SEND, sc=23, family=2, port=53, addr=bytes([10, 0, 0, 1]), ret=len(payload),
                   status=ST_CONNECTED, val=(len(payload), 2, 1, 0), payload=payload))
    assert d.event == {**COMMON, "kind": "send", "syscall": "sendto", "ret": len(payload),
                       "family": 2, "addr": "10.0.0.1", "port": 53, "bytes": len(payload),
                       "sock_type": 2, "messages": 1, "connected": True, "dns_qname_len": 26,
                       "dns_qname_hash": qname_hash(b"secret-token.exfil.example"), "dns_qtype": 16}
    assert b"secret" not in repr(d.event).encode() and bus.validate_event(d.event) == []
    d = dec(record(EV_SEND, sc=24, family=2, val=(9, 2, 1, 0), payload=payload[:14]))
    assert d.dns_unparsed and "dns_qname_hash" not in d.event


def test_setid_ids_by_syscall_and_capset_masks():
    d = dec(record(EV_SETID, sc=31, val=(0xFFFFFFFF, 0, 0xFFFFFFFF, 65534 | 100 << 32)))
    assert (d.event["ids"], d.event["euid"], d.event["egid"]) == ([-1, 0, -1], 65534, 100)
    assert dec(record(EV_SETID, sc=29, val=(0, 0, 0, 0))).event["ids"] == [0]
    assert dec(record(EV_SETID, sc=33, val=(5, 6, 0, 0))).event["ids"] == [5, 6]
    d = dec(record(EV_CAPSET, sc=35, val=(1 << 40, 3, 0, 2 ** 64 - 1)))
    assert (d.event["effective"], d.event["permitted"], d.event["pid"]) == (1 << 40, 3, -1)
    d = dec(record(EV_SOCKET, sc=28, family=17, val=(3, 768, 0, 0)))
    assert (d.event["family"], d.event["type"], d.event["protocol"]) == (17, 3, 768)
    assert all(bus.validate_event(dec(record(k, sc=sc)).event) == []
               for k, sc in ((EV_SETID, 30), (EV_CAPSET, 35), (EV_SOCKET, 28)))


# ---- exec facts ---------------------------------------------------------------------------------

ST_STDIO, ST_ENV_READ, ST_PREV_CREDS, ST_ENV_TRUNCATED = 0x800, 0x8000, 0x400, 0x100


def test_exec_stdio_parent_types_and_ld_env():
    addr = bytes([127, 0, 0, 1]).ljust(16, b"\0")
    lens = (6, 0, 5, 5, 0, 0)       # LD_PRELOAD once; LD_LIBRARY_PATH first and last, equal
    info = FD_INFO.pack(0, 55, 0, addr * 1 + bytes(32), 2, 0, 0, 4444, 0, 0, 6, 3, 9, 6, 6, 1, *lens)
    ld = b"/x.so\0".ljust(256, b"\0") + bytes(256) + b"/lib\0".ljust(256, b"\0") * 2
    d = dec(record(EV_EXEC, sc=1, argc=1, argv=slots(b"sh"), path=b"/bin/sh",
                   status=ST_STDIO | ST_ENV_READ | ST_PREV_CREDS | ST_ENV_TRUNCATED | ST_CAPS_VALID,
                   val=(0, 1000, 0, 0), fd_info=info, ld_env=ld))
    e = d.event
    assert e["stdio"] == [{"type": "inet", "ino": 0, "family": 2, "addr": "127.0.0.1", "port": 4444},
                          {"type": "pipe", "ino": 55}, {"type": "other"}]
    assert e["parent_stdio"] == ["inet", "inet", "file"]
    assert e["ld_env"] == {"LD_PRELOAD": "/x.so", "LD_LIBRARY_PATH": "/lib"}
    assert (e["euid"], e["prev_euid"], e["prev_cap_eff"], e["env_truncated"]) == (0, 1000, 0, True)
    assert bus.validate_event(e) == []


def test_an_exec_without_the_facts_has_none_of_them():
    e = dec(record(EV_EXEC, sc=1, argc=1, argv=slots(b"x"), path=b"/x", ret=-2)).event
    assert (e["euid"], e["prev_euid"], e["prev_cap_eff"]) == (0, None, None)
    assert not {"stdio", "parent_stdio", "ld_env", "env_truncated"} & set(e)
    assert HEADER_SIZE == 200 and DIR_OK == 1
