"""collector/btf_offsets.py: a hand-built BTF blob (anonymous unions, typedefs, errors) and the
running kernel's BTF checked member by member against `bpftool btf dump ... format raw`."""

from __future__ import annotations

import platform
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from collector.btf_offsets import (KIND_INT, KIND_STRUCT, KIND_TYPEDEF, KIND_UNION, VMLINUX_BTF,
                                   Btf, BtfError, load_vmlinux)
from collector.loader import OFFSET_PATHS


def _blob() -> bytes:
    """struct inner {int a; int b;}; typedef struct inner inner_t;
    struct outer {int x; union {int y; inner_t in;}; int bits:3;}"""
    strings = b"\0int\0inner\0a\0b\0inner_t\0outer\0x\0y\0in\0bits\0"
    off = {s: strings.index(b"\0" + s.encode() + b"\0") + 1 for s in
           ("int", "inner", "a", "b", "inner_t", "outer", "x", "y", "in", "bits")}

    def t(name: str | None, kind: int, vlen: int, size_or_type: int, kind_flag: int = 0) -> bytes:
        return struct.pack("<III", off[name] if name else 0,
                           (kind_flag << 31) | (kind << 24) | vlen, size_or_type)

    def m(name: str, type_id: int, bits: int) -> bytes:
        return struct.pack("<III", off[name], type_id, bits)

    types = b"".join([
        t("int", KIND_INT, 0, 4) + struct.pack("<I", 32),                          # 1
        t("inner", KIND_STRUCT, 2, 8) + m("a", 1, 0) + m("b", 1, 32),               # 2
        t("inner_t", KIND_TYPEDEF, 0, 2),                                           # 3
        t(None, KIND_UNION, 2, 8) + m("y", 1, 0) + m("in", 3, 0),                   # 4
        t("outer", KIND_STRUCT, 3, 20, kind_flag=1)
        + m("x", 1, 0) + struct.pack("<III", 0, 4, 64) + m("bits", 1, (3 << 24) | 128),  # 5
    ])
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_members_through_anonymous_unions_and_typedefs():
    btf = Btf(_blob())
    assert btf.offset("outer.x") == 0
    assert btf.offset("outer.y") == 8
    assert btf.offset("outer.in.b") == 12
    assert btf.offset("inner.b") == 4
    assert btf.size("outer") == 20


@pytest.mark.parametrize("path,message", [
    ("outer.nope", "no member 'nope'"),
    ("missing.x", "no struct or union named 'missing'"),
    ("outer", "expected struct.member"),
    ("outer.bits", "is a bitfield"),
])
def test_bad_paths_name_the_problem(path, message):
    with pytest.raises(BtfError, match=re.escape(message)):
        Btf(_blob()).offset(path)


def test_garbage_is_rejected_clearly():
    with pytest.raises(BtfError, match="bad BTF magic"):
        Btf(b"\0" * 64)
    with pytest.raises(BtfError, match="cannot read"):
        load_vmlinux(Path("/nonexistent/vmlinux"))


def _bpftool_members(struct_name: str) -> dict[str, int]:
    out = subprocess.run(["bpftool", "btf", "dump", "file", str(VMLINUX_BTF), "format", "raw"],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.match(rf"\[\d+\] STRUCT '{struct_name}' ", ln))
    members = {}
    for ln in lines[start + 1:]:
        mm = re.match(r"\t'([^']*)' type_id=\d+ bits_offset=(\d+)", ln)
        if not mm:
            break
        if mm.group(1) and mm.group(1) != "(anon)" and "bitfield_size" not in ln:
            members[mm.group(1)] = int(mm.group(2)) // 8
    return members


@pytest.mark.skipif(not VMLINUX_BTF.exists() or shutil.which("bpftool") is None,
                    reason="needs /sys/kernel/btf/vmlinux and bpftool (setup.sh installs it)")
@pytest.mark.parametrize("struct_name", ["task_struct", "cred", "file", "dentry", "fdtable"])
def test_every_named_member_matches_bpftool(struct_name):
    btf = load_vmlinux()
    want = _bpftool_members(struct_name)
    assert want
    got = {name: btf.offset(f"{struct_name}.{name}") for name in want}
    assert got == want


@pytest.mark.skipif(not VMLINUX_BTF.exists(), reason="needs /sys/kernel/btf/vmlinux")
def test_every_offset_the_collector_needs_resolves():
    btf = load_vmlinux()
    offsets = {name: btf.offset(path) for name, path in OFFSET_PATHS.items()}
    assert all(v >= 0 for v in offsets.values())
    assert offsets["OFF_MM_ARG_END"] == offsets["OFF_MM_ARG_START"] + 8


@pytest.mark.skipif(not VMLINUX_BTF.exists() or shutil.which("bpftool") is None,
                    reason="needs /sys/kernel/btf/vmlinux and bpftool (setup.sh installs it)")
def test_syscall_argument_registers_resolve_and_other_machines_are_refused_by_name():
    from collector.loader import LoaderError, syscall_arg_offsets
    btf = load_vmlinux()
    if platform.machine() == "x86_64":
        regs = _bpftool_members("pt_regs")
        assert syscall_arg_offsets(btf) == [regs["di"], regs["si"], regs["dx"], regs["r10"], regs["r8"], regs["r9"]]
    with pytest.raises(LoaderError, match="'riscv64' is not supported"):
        syscall_arg_offsets(btf, "riscv64")
