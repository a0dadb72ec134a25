"""Compile and attach bpf/collector.bpf.c with bcc: cflags from config and kernel BTF, maps.

Build-time values (limits, ring-buffer pages, kernel struct offsets, tracepoint ids) go in as
``-D`` cflags; run-time values (tracked tgids, root comms, the collector's own tgid) go in maps.
The C text is never edited. bcc attaches every ``TRACEPOINT_PROBE`` on load; the family programs
(one program for several tracepoints, FAMILIES) and the exec tail call are set up here after it.
:func:`check_tracepoints` runs first so a missing hook is named instead of failing inside bcc.
"""

from __future__ import annotations

import ctypes
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bpf import BPF_DIR
from collector.btf_offsets import Btf, load_vmlinux

__all__ = ["Limits", "LoaderError", "TRACEPOINTS", "OPTIONAL_TRACEPOINTS", "FAMILIES", "OFFSET_PATHS",
           "SYSCALL_ARG_REGS", "SYSCALL_NRS", "SOURCE", "cflags", "syscall_arg_offsets",
           "syscall_numbers", "check_tracepoints", "load", "tracefs_root", "comm_key",
           "set_root_comms", "KernelTrackedMap", "kernel_drops"]

SOURCE = BPF_DIR / "collector.bpf.c"
TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))

TRACEPOINTS = (
    "syscalls/sys_enter_execve", "syscalls/sys_exit_execve",
    "syscalls/sys_enter_execveat", "syscalls/sys_exit_execveat",
    "syscalls/sys_exit_openat", "syscalls/sys_exit_openat2", "syscalls/sys_exit_open",
    "syscalls/sys_exit_connect",
    "sched/sched_process_exec", "sched/sched_process_exit", "task/task_newtask",
    # the detection signals (bpf/files.bpf.c, net.bpf.c, privilege.bpf.c): sys_exit only
    "syscalls/sys_exit_chmod", "syscalls/sys_exit_fchmod", "syscalls/sys_exit_fchmodat",
    "syscalls/sys_exit_fchmodat2",
    "syscalls/sys_exit_unlink", "syscalls/sys_exit_unlinkat", "syscalls/sys_exit_rmdir",
    "syscalls/sys_exit_rename", "syscalls/sys_exit_renameat", "syscalls/sys_exit_renameat2",
    "syscalls/sys_exit_truncate", "syscalls/sys_exit_ftruncate", "syscalls/sys_exit_memfd_create",
    "syscalls/sys_exit_sendto", "syscalls/sys_exit_sendmsg", "syscalls/sys_exit_sendmmsg",
    "syscalls/sys_exit_bind", "syscalls/sys_exit_listen", "syscalls/sys_exit_socket",
    "syscalls/sys_exit_ptrace", "syscalls/sys_exit_process_vm_readv",
    "syscalls/sys_exit_process_vm_writev",
    "syscalls/sys_exit_setuid", "syscalls/sys_exit_setreuid", "syscalls/sys_exit_setresuid",
    "syscalls/sys_exit_setgid", "syscalls/sys_exit_setregid", "syscalls/sys_exit_setresgid",
    "syscalls/sys_exit_capset",
)

# Legacy syscalls that arm64 never had (only the *at forms): hooked where they exist.
OPTIONAL_TRACEPOINTS = frozenset({
    "syscalls/sys_exit_open", "syscalls/sys_exit_chmod", "syscalls/sys_exit_unlink",
    "syscalls/sys_exit_rmdir", "syscalls/sys_exit_rename",
})

# program -> the tracepoints it serves. One program per family of calls instead of one per
# tracepoint: the path calls inline the dentry walk, and a copy per tracepoint would more than
# double the time to compile and verify the collector (docs/performance.md, section 7). A family program tells its tracepoints apart
# by the record's __syscall_nr, compared with -DCASA_NR_<NAME> (SYSCALL_NRS; a tracepoint program may
# not read the record's common header, where the tracepoint's own id is).
FAMILIES: dict[str, tuple[str, ...]] = {
    "exec_enter_family": ("syscalls/sys_enter_execve", "syscalls/sys_enter_execveat"),
    "open_family": ("syscalls/sys_exit_openat", "syscalls/sys_exit_openat2", "syscalls/sys_exit_open"),
    "path_family": ("syscalls/sys_exit_chmod", "syscalls/sys_exit_fchmodat", "syscalls/sys_exit_fchmodat2",
                    "syscalls/sys_exit_unlink", "syscalls/sys_exit_unlinkat", "syscalls/sys_exit_rmdir",
                    "syscalls/sys_exit_truncate"),
    "fd_path_family": ("syscalls/sys_exit_fchmod", "syscalls/sys_exit_ftruncate"),
    "rename_family": ("syscalls/sys_exit_rename", "syscalls/sys_exit_renameat", "syscalls/sys_exit_renameat2"),
    "send_family": ("syscalls/sys_exit_sendto", "syscalls/sys_exit_sendmsg", "syscalls/sys_exit_sendmmsg"),
}

# -D CASA_NR_<NAME> -> syscall numbers of the families' calls, per machine (arch/x86/entry/syscalls/
# syscall_64.tbl; arm64: include/uapi/asm-generic/unistd.h). -1: the machine has no such call.
SYSCALL_NRS: dict[str, dict[str, int]] = {
    "x86_64": {"execve": 59, "execveat": 322, "openat": 257, "openat2": 437, "open": 2, "chmod": 90,
               "fchmodat": 268, "fchmodat2": 452, "unlink": 87, "unlinkat": 263, "rmdir": 84,
               "truncate": 76, "fchmod": 91, "ftruncate": 77, "rename": 82, "renameat": 264,
               "renameat2": 316, "sendto": 44, "sendmsg": 46, "sendmmsg": 307},
    "aarch64": {"execve": 221, "execveat": 281, "openat": 56, "openat2": 437, "open": -1, "chmod": -1,
                "fchmodat": 53, "fchmodat2": 452, "unlink": -1, "unlinkat": 35, "rmdir": -1,
                "truncate": 45, "fchmod": 52, "ftruncate": 46, "rename": -1, "renameat": 38,
                "renameat2": 276, "sendto": 206, "sendmsg": 211, "sendmmsg": 269},
}

# -D name -> struct.member path in the running kernel's BTF
OFFSET_PATHS = {
    "OFF_TASK_REAL_PARENT": "task_struct.real_parent",
    "OFF_TASK_TGID": "task_struct.tgid",
    "OFF_TASK_EXIT_CODE": "task_struct.exit_code",
    "OFF_TASK_CRED": "task_struct.cred",
    "OFF_TASK_SECCOMP_MODE": "task_struct.seccomp.mode",
    "OFF_TASK_MM": "task_struct.mm",
    "OFF_TASK_FILES": "task_struct.files",
    "OFF_CRED_CAP_EFF": "cred.cap_effective",
    "OFF_MM_ARG_START": "mm_struct.arg_start",
    "OFF_MM_ARG_END": "mm_struct.arg_end",
    "OFF_FILES_FDT": "files_struct.fdt",
    "OFF_FDT_FD": "fdtable.fd",
    "OFF_FDT_MAX_FDS": "fdtable.max_fds",
    "OFF_FILE_DENTRY": "file.f_path.dentry",
    "OFF_DENTRY_NAME": "dentry.d_name.name",
    "OFF_DENTRY_INODE": "dentry.d_inode",
    "OFF_INODE_NLINK": "inode.__i_nlink",
    # base directory of relative paths (walk_dir) and file identity
    "OFF_TASK_FS": "task_struct.fs",
    "OFF_FS_ROOT": "fs_struct.root",
    "OFF_FS_PWD": "fs_struct.pwd",
    "OFF_PATH_DENTRY": "path.dentry",
    "OFF_PATH_MNT": "path.mnt",
    "OFF_DENTRY_PARENT": "dentry.d_parent",
    "OFF_DENTRY_QSTR": "dentry.d_name",
    "OFF_DENTRY_NAME_LEN": "dentry.d_name.len",
    "OFF_DENTRY_HASH_PPREV": "dentry.d_hash.pprev",
    "OFF_VFSMOUNT_MNT_ROOT": "vfsmount.mnt_root",
    "OFF_MOUNT_MNT": "mount.mnt",
    "OFF_MOUNT_PARENT": "mount.mnt_parent",
    "OFF_MOUNT_MOUNTPOINT": "mount.mnt_mountpoint",
    "OFF_FILE_MNT": "file.f_path.mnt",
    "OFF_FILE_INODE": "file.f_inode",
    "OFF_INODE_MODE": "inode.i_mode",
    "OFF_INODE_INO": "inode.i_ino",
    "OFF_INODE_SB": "inode.i_sb",
    "OFF_SB_DEV": "super_block.s_dev",
    "OFF_MM_EXE_FILE": "mm_struct.exe_file",
    # exec: credentials around it, the new image's environment, what fds 0-2 are (bpf/fds.bpf.c)
    "OFF_CRED_EUID": "cred.euid",
    "OFF_CRED_EGID": "cred.egid",
    "OFF_MM_START_STACK": "mm_struct.start_stack",
    "OFF_MM_ENV_START": "mm_struct.env_start",
    "OFF_MM_ENV_END": "mm_struct.env_end",
    "OFF_INODE_RDEV": "inode.i_rdev",
    "OFF_FILE_PRIVATE": "file.private_data",
    "OFF_SOCKET_TYPE": "socket.type",
    "OFF_SOCKET_SK": "socket.sk",
    "OFF_SKC_FAMILY": "sock.__sk_common.skc_family",
    "OFF_SKC_DADDR": "sock.__sk_common.skc_daddr",
    "OFF_SKC_RCV_SADDR": "sock.__sk_common.skc_rcv_saddr",
    "OFF_SKC_DPORT": "sock.__sk_common.skc_dport",
    "OFF_SKC_NUM": "sock.__sk_common.skc_num",
    "OFF_SKC_V6_DADDR": "sock.__sk_common.skc_v6_daddr",
    "OFF_SKC_V6_RCV_SADDR": "sock.__sk_common.skc_v6_rcv_saddr",
}


# -D OFF_SC_ARG0..5 -> where syscall arguments 1-6 sit in the task's saved user registers
# (struct pt_regs), per machine. Every probe but exec's runs at sys_exit only and reads the
# arguments back from there; the syscall leaves these registers unchanged. On arm64 regs[0]
# already holds the return value at sys_exit, so argument 1 comes from orig_x0.
SYSCALL_ARG_REGS: dict[str, tuple[tuple[str, int], ...]] = {
    "x86_64": (("pt_regs.di", 0), ("pt_regs.si", 0), ("pt_regs.dx", 0), ("pt_regs.r10", 0),
               ("pt_regs.r8", 0), ("pt_regs.r9", 0)),
    "aarch64": (("pt_regs.orig_x0", 0), ("pt_regs.regs", 8), ("pt_regs.regs", 16), ("pt_regs.regs", 24),
                ("pt_regs.regs", 32), ("pt_regs.regs", 40)),
}


class LoaderError(RuntimeError):
    """The BPF program cannot be built or attached; the message names what and why."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Build-time limits (config/casa.json ``collector``)."""

    max_args: int = 16
    max_arg_len: int = 128
    max_path_len: int = 4096
    ringbuf_pages: int = 256


def tracefs_root() -> Path | None:
    for p in TRACEFS_CANDIDATES:
        if (p / "events").is_dir():
            return p
    return None


def check_tracepoints() -> None:
    """Raise LoaderError naming the first tracepoint this kernel does not have."""
    root = tracefs_root()
    if root is None:
        raise LoaderError("tracefs is not mounted: mount -t tracefs nodev /sys/kernel/tracing "
                          "(setup.sh does this)")
    for tp in TRACEPOINTS:
        if not (root / "events" / tp).is_dir() and tp not in OPTIONAL_TRACEPOINTS:
            raise LoaderError(f"tracepoint {tp.replace('/', ':')} is missing on this kernel "
                              f"({root / 'events' / tp} does not exist)")



def cflags(limits: Limits, btf: Btf | None = None) -> list[str]:
    """Every -D the program needs: limits, then kernel struct offsets read from BTF."""
    btf = btf or load_vmlinux()
    flags = [f"-I{BPF_DIR}", "-w",   # -w: the borrowed kernel headers warn a lot

             f"-DMAX_ARGS={int(limits.max_args)}", f"-DMAX_ARG_LEN={int(limits.max_arg_len)}",
             f"-DMAX_PATH_LEN={int(limits.max_path_len)}", f"-DRINGBUF_PAGES={int(limits.ringbuf_pages)}"]
    for name, path in OFFSET_PATHS.items():
        flags.append(f"-D{name}={btf.offset(path)}")
    for i, off in enumerate(syscall_arg_offsets(btf)):
        flags.append(f"-DOFF_SC_ARG{i}={off}")
    for name, nr in syscall_numbers().items():
        flags.append(f"-DCASA_NR_{name.upper()}={nr}")
    return flags


def syscall_numbers(machine: str | None = None) -> dict[str, int]:
    """The families' syscall numbers on this machine (SYSCALL_NRS)."""
    machine = machine or platform.machine()
    nrs = SYSCALL_NRS.get(machine)
    if nrs is None:
        raise LoaderError(f"machine {machine!r} is not supported: the collector knows syscall numbers "
                          f"of {', '.join(sorted(SYSCALL_NRS))} only")
    return nrs


def syscall_arg_offsets(btf: Btf, machine: str | None = None) -> list[int]:
    """Offsets of syscall arguments 1-6 in ``struct pt_regs`` of the running kernel (BTF)."""
    machine = machine or platform.machine()
    regs = SYSCALL_ARG_REGS.get(machine)
    if regs is None:
        raise LoaderError(f"machine {machine!r} is not supported: the collector knows where syscall "
                          f"arguments are saved on {', '.join(sorted(SYSCALL_ARG_REGS))} only")
    return [btf.offset(path) + extra for path, extra in regs]


def comm_key(comm: str) -> bytes:
    """A ``root_comms`` key: the comm's bytes, at most 15, zero-padded to 16."""
    return comm.encode("utf-8", "surrogateescape")[:15].ljust(16, b"\0")


def load(limits: Limits, self_tgid: int, root_comms: set[str]) -> Any:
    """Compile, attach, and fill the run-time maps; returns the bcc ``BPF`` object."""
    check_tracepoints()
    try:
        from bcc import BPF
    except ImportError:
        raise LoaderError("bcc is not importable: apt-get install -y python3-bpfcc (setup.sh does "
                          "this and links it into .venv)") from None
    flags = cflags(limits)
    try:
        b = BPF(src_file=str(SOURCE).encode(), cflags=flags)
    except Exception as exc:   # bcc raises bare Exception on compile/load errors
        raise LoaderError(f"cannot load {SOURCE.name}: {exc}") from None
    b[b"self_tgid"][ctypes.c_int(0)] = ctypes.c_uint32(self_tgid)
    set_root_comms(b, root_comms)
    install_tail_calls(b)
    attach_families(b)
    return b


def attach_families(b: Any) -> None:
    """Attach each family program to its tracepoints that exist on this kernel."""
    root = tracefs_root()
    for fn, tps in FAMILIES.items():
        for tp in tps:
            if root is not None and not (root / "events" / tp).is_dir():
                continue                     # an OPTIONAL_TRACEPOINTS one (check_tracepoints)
            try:
                b.attach_tracepoint(tp=tp.replace("/", ":").encode(), fn_name=fn.encode())
            except Exception as exc:   # bcc raises bare Exception (verifier, attach)
                raise LoaderError(f"cannot attach {fn} of {SOURCE.name} to {tp}: {exc}") from None


def install_tail_calls(b: Any) -> None:
    """Put exec_facts (fds 0-2 and LD_* of a new image) where the exec probes tail-call it.

    Loaded here, not attached: it runs only as the tail of the exec probes (bpf/collector.bpf.c).
    """
    from bcc import BPF
    try:
        fn = b.load_func(b"exec_facts", BPF.TRACEPOINT)
    except Exception as exc:   # bcc raises bare Exception when the verifier refuses a program
        raise LoaderError(f"cannot load exec_facts of {SOURCE.name}: {exc}") from None
    b[b"exec_tail"][ctypes.c_int(0)] = ctypes.c_int(fn.fd)


def set_root_comms(b: Any, comms: set[str]) -> None:
    """Replace the kernel's set of root-candidate comms."""
    table = b[b"root_comms"]
    table.clear()
    for comm in comms:
        key = table.Key()
        ctypes.memmove(ctypes.byref(key), comm_key(comm), 16)
        table[key] = ctypes.c_uint8(1)


class KernelTrackedMap:
    """scope.TrackedMap over the BPF ``tracked`` hash (tgid -> struct track)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def set(self, tgid: int, entry: Any) -> None:
        leaf = self.table.Leaf()
        leaf.root, leaf.depth, leaf.provisional = entry.root, entry.depth, int(entry.provisional)
        self.table[self.table.Key(tgid)] = leaf

    def delete(self, tgid: int) -> None:
        try:
            del self.table[self.table.Key(tgid)]
        except KeyError:
            pass                        # exited meanwhile: the kernel removed it

    def items(self) -> list[tuple[int, Any]]:
        from collector.scope import Entry
        return [(k.value, Entry(v.root, v.depth, bool(v.provisional))) for k, v in self.table.items()]


def kernel_drops(b: Any) -> int:
    """Records lost to a full ring buffer since load (sum over CPUs)."""
    return int(sum(b[b"drops"][ctypes.c_int(0)]))
