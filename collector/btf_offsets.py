"""Kernel struct member offsets from the running kernel's BTF (/sys/kernel/btf/vmlinux).

Why: the kernel headers bcc compiles against may belong to another kernel build (on the project's
machines they do), so ``task->real_parent`` compiled from headers reads the wrong bytes. The
collector reads the offsets it needs here, at start-up, and passes them to the BPF program as
``-D`` cflags; the BPF C only ever does ``bpf_probe_read_kernel(ptr + OFFSET)``.

A path is ``struct.member[.member...]``: members of embedded structs and unions are followed
(``file.f_path.dentry``), anonymous structs/unions are searched transparently
(``mm_struct.arg_start`` lives in an anonymous struct) and typedefs/const/volatile are skipped.
Pointers are never followed: an offset is always within one object.

Only the BTF type section is parsed (format: Documentation/bpf/btf.rst); pure Python, ~0.3 s.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BtfError", "Btf", "Member", "load_vmlinux", "VMLINUX_BTF"]

VMLINUX_BTF = Path("/sys/kernel/btf/vmlinux")
BTF_MAGIC = 0xEB9F

# BTF kinds (include/uapi/linux/btf.h)
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD = 1, 2, 3, 4, 5, 6, 7
KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO = 8, 9, 10, 11, 12, 13
KIND_VAR, KIND_DATASEC, KIND_FLOAT, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 14, 15, 16, 17, 18, 19
_SKIPPED_MODIFIERS = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}
# bytes of kind-specific data after the 12-byte btf_type: (fixed, per vlen item)
_EXTRA = {KIND_INT: (4, 0), KIND_ARRAY: (12, 0), KIND_STRUCT: (0, 12), KIND_UNION: (0, 12),
          KIND_ENUM: (0, 8), KIND_FUNC_PROTO: (0, 8), KIND_VAR: (4, 0), KIND_DATASEC: (0, 12),
          KIND_DECL_TAG: (4, 0), KIND_ENUM64: (0, 12)}


class BtfError(ValueError):
    """The BTF blob is unreadable, or a requested struct/member path does not exist in it."""


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int


@dataclass(frozen=True, slots=True)
class BtfType:
    kind: int
    name: str
    size_or_type: int          # size for INT/STRUCT/UNION/ENUM, referenced type id otherwise
    members: tuple[Member, ...] = ()


class Btf:
    """Parsed BTF types, indexed by id and (for structs and unions) by name."""

    def __init__(self, blob: bytes) -> None:
        self.types: list[BtfType | None] = [None]      # type id 0 is void
        self.structs: dict[str, int] = {}
        self._parse(blob)

    def _parse(self, blob: bytes) -> None:
        if len(blob) < 24:
            raise BtfError("BTF blob is shorter than its header")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x} (expected {BTF_MAGIC:#x}; big-endian BTF unsupported)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
        types = blob[hdr_len + type_off: hdr_len + type_off + type_len]
        strings = blob[hdr_len + str_off: hdr_len + str_off + str_len]
        pos = 0
        while pos < len(types):
            name_off, info, size_or_type = struct.unpack_from("<III", types, pos)
            pos += 12
            kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
            fixed, per_item = _EXTRA.get(kind, (0, 0))
            members: tuple[Member, ...] = ()
            if kind in (KIND_STRUCT, KIND_UNION):
                members = tuple(self._member(types, pos + 12 * i, strings, kind_flag) for i in range(vlen))
            pos += fixed + per_item * vlen
            name = _string(strings, name_off)
            self.types.append(BtfType(kind, name, size_or_type, members))
            if kind in (KIND_STRUCT, KIND_UNION) and name:
                self.structs.setdefault(name, len(self.types) - 1)

    @staticmethod
    def _member(types: bytes, pos: int, strings: bytes, kind_flag: int) -> Member:
        name_off, type_id, offset = struct.unpack_from("<III", types, pos)
        if kind_flag:
            return Member(_string(strings, name_off), type_id, offset & 0xFFFFFF, offset >> 24)
        return Member(_string(strings, name_off), type_id, offset, 0)

    def resolve(self, type_id: int) -> int:
        """Follow typedef/const/volatile/restrict/type_tag to the underlying type id."""
        for _ in range(64):
            t = self.types[type_id]
            if t is None or t.kind not in _SKIPPED_MODIFIERS:
                return type_id
            type_id = t.size_or_type
        raise BtfError(f"type chain of id {type_id} is too long")

    def _find(self, type_id: int, name: str) -> tuple[int, Member] | None:
        """(bit offset, member) of ``name`` in the struct/union ``type_id``, searching anonymous members."""
        t = self.types[self.resolve(type_id)]
        if t is None or t.kind not in (KIND_STRUCT, KIND_UNION):
            return None
        for m in t.members:
            if m.name == name:
                return m.bit_offset, m
        for m in t.members:
            if not m.name:
                found = self._find(m.type_id, name)
                if found is not None:
                    return m.bit_offset + found[0], found[1]
        return None

    def offset(self, path: str) -> int:
        """Byte offset of ``struct.member[.member...]``; BtfError if any part is missing."""
        parts = path.split(".")
        if len(parts) < 2:
            raise BtfError(f"{path!r}: expected struct.member")
        type_id = self.structs.get(parts[0])
        if type_id is None:
            raise BtfError(f"{path!r}: no struct or union named {parts[0]!r} in the kernel BTF")
        bits = 0
        for name in parts[1:]:
            found = self._find(type_id, name)
            if found is None:
                raise BtfError(f"{path!r}: no member {name!r} (the running kernel's layout differs)")
            bits += found[0]
            type_id = found[1].type_id
            if found[1].bitfield_size:
                raise BtfError(f"{path!r}: {name!r} is a bitfield, which has no byte offset")
        if bits % 8:
            raise BtfError(f"{path!r}: not byte-aligned (bit offset {bits})")
        return bits // 8

    def size(self, struct_name: str) -> int:
        type_id = self.structs.get(struct_name)
        if type_id is None:
            raise BtfError(f"no struct or union named {struct_name!r} in the kernel BTF")
        t = self.types[type_id]
        assert t is not None
        return t.size_or_type


def _string(strings: bytes, off: int) -> str:
    end = strings.find(b"\0", off)
    return strings[off:end if end >= 0 else len(strings)].decode("utf-8", "replace")


def load_vmlinux(path: Path = VMLINUX_BTF) -> Btf:
    """Parse the running kernel's BTF; BtfError with the reason if it is missing or unreadable."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise BtfError(f"cannot read {path}: {exc.strerror} (kernel built without CONFIG_DEBUG_INFO_BTF?)") from None
    return Btf(blob)
