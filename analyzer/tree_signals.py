"""A tree's history of the bus-schema-2 signals (docs/rules.md has each field's semantics).

:class:`TreeSignals` is made on first use (most trees never send UDP, listen or pipe a
download into a shell) and holds what pairs events across processes:

* pipe readers: a shell or interpreter reading its program from stdin, by the inode of its stdin
  pipe, until the pipe's writer shows up (``curl ... | sh`` execs in either order). Writers are
  found through the process images (their stdout pipe inode is kept with the image);
* the latest listen (or bind to a port) on a non-loopback address (bind shells);
* directories the tree wrote a shared library into (``LD_LIBRARY_PATH`` hijacks);
* per UDP destination: the bytes sent in the last ``udp_exfil_window_seconds`` (in 9 buckets of
  an eighth of the window each: what was sent in the last W to 9W/8 seconds) and the distinct DNS
  query-name hashes seen in the window (seconds resolution).

The functions below are called by TreeHistory.fold for each kind; every index is bounded by its
cap and the horizon, and evicting a live entry sets ``history.overflow`` (TreeHistory._remember).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from analyzer.evidence import Ref
from analyzer.history_flags import HISTORY_BIT
from analyzer.path_classes import PROCESS_LISTERS, proc_target
from analyzer.scripts import INLINE, STDIN, program_source
from analyzer.session_state import EXEC, ProcessState, basename, int_field, text
from analyzer.tree_index import X_BIT, Index, SessionMarks, pack, path_key, within
from bus.paths import normalise

if TYPE_CHECKING:
    from analyzer.tree_history import TreeHistory

__all__ = ["TreeSignals", "P_AGENT", "P_NETFED", "P_INLINE", "exec_signals", "stdio_types", "signal_event",
           "connected", "foreign_open", "library_written", "is_loopback", "udp_send", "setuid_chmod",
           "netfed", "writer_exec", "loader_hijack", "preload_injection"]

P_AGENT, P_NETFED, P_INLINE = 1, 2, 4   # process image flags (low bits of its packed value)
NET_SOCKETS = frozenset({"inet", "socket"})    # not unix: a local socket is no network shell
_LD_FILES = ("LD_PRELOAD", "LD_AUDIT")
S_ISUID_GID = 0o6000
PTRACE_TRACEME = 0

_RAW, _MEMFD = HISTORY_BIT["raw_socket"], HISTORY_BIT["memfd_created"]
_SETUID, _FOREIGN = HISTORY_BIT["setuid_created"], HISTORY_BIT["foreign_process_read"]
_UDP, _BIND = HISTORY_BIT["udp_exfil"], HISTORY_BIT["bind_shell"]
_REVERSE, _PIPE = X_BIT["execution.reverse_shell"], X_BIT["execution.pipe_to_shell"]
_LOADER = X_BIT["execution.loader_hijack"]
_PRELOAD = X_BIT["execution.preload_injection"]


class TreeSignals:
    __slots__ = ("readers", "lib_dirs", "udp", "last_listen")

    def __init__(self, small_cap: int, udp_cap: int) -> None:
        self.readers = Index(small_cap)       # stdin pipe inode -> (packed exec, reader path)
        self.lib_dirs = Index(small_cap)      # path_key(dir) -> packed write of a library in it
        self.udp = Index(udp_cap)             # "addr:port" -> [packed last send, buckets, names]
        self.last_listen: Ref | None = None


def is_loopback(addr: str) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False                          # unparsable: not known to be local
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def stdio_types(ev: dict[str, Any]) -> tuple[list[str], list[Any]]:
    """The types of an exec's fds 0-2 (``""`` where unknown) and their maps."""
    stdio = ev.get("stdio")
    if type(stdio) is not list:
        return [], []
    maps = [fd if type(fd) is dict else {} for fd in stdio[:3]]
    return [m.get("type") if type(m.get("type")) is str else "" for m in maps], maps


# ---------------------------------------------------------------- execs

def exec_signals(tree: "TreeHistory", ev: dict[str, Any], proc: ProcessState, family: str | None,
                 ref: Ref, m: SessionMarks) -> tuple[list[str], int | None]:
    """Reverse shell, loader hijack, bind shell and pipe pairing of one exec (role ones too);
    returns the types of its fds 0-2 and the inode of its stdout pipe, if any. A ``#!`` script
    of any name whose interpreter is a system shell or interpreter (its exec's identity) is a
    shell for the reverse and bind shell tests."""
    types, maps = stdio_types(ev)
    if ev.get("env_truncated") is True:
        m.evidence.append("execution.env_truncated", ref)
    ld_env = ev.get("ld_env")
    if ld_env and type(ld_env) is dict:
        hijack, write = loader_hijack(tree, ld_env, ref[0])
        if hijack:
            m.hit_x(_LOADER, (write, ref))
            if preload_injection(tree, ld_env, _lib_path(ld_env), ref[0])[0]:
                m.hit_x(_PRELOAD, (write, ref))
    if not types:
        return types, None
    parent = ev.get("parent_stdio")
    parent_inet = type(parent) is list and "inet" in parent
    shell = family is not None or _interpreter_identity(tree, ev)
    if (shell and ("inet" in types or parent_inet)) or types[:2] == ["inet", "inet"]:
        m.hit_x(_REVERSE, (ref,))
    if shell and not NET_SOCKETS.isdisjoint(types):
        sig = tree.sig
        if sig is not None and within(sig.last_listen, ref[0], tree.c.horizon_ns):
            m.hit(_BIND, (sig.last_listen, ref))
    if family is not None and types[0] == "pipe" and type(maps[0].get("ino")) is int:
        if program_source(family, proc.args)[0] == STDIN:
            _pipe_reader(tree, maps[0]["ino"], ref, m)
    if len(types) > 1 and types[1] == "pipe" and type(maps[1].get("ino")) is int:
        return types, maps[1]["ino"]
    return types, None


def _interpreter_identity(tree: "TreeHistory", ev: dict[str, Any]) -> bool:
    ino, dev = ev.get("ino"), ev.get("dev")
    return type(ino) is int and type(dev) is int and ((dev << 64) | ino) in tree.classes.interpreter_ids


def netfed(tree: "TreeHistory", name: str, types: list[str]) -> bool:
    """A writer that feeds a pipe from the network: a network tool, or its stdio is a socket."""
    return name in tree.c.network_tools or "inet" in types


def writer_exec(tree: "TreeHistory", ino: int, flags: int, ref: Ref, m: SessionMarks) -> None:
    """An exec whose stdout is pipe ``ino``: a shell already reading it is fed by the network?"""
    sig = tree.sig
    if sig is None or not flags & P_NETFED:
        return
    reader = sig.readers.items.get(ino)
    if reader is not None:
        m.hit_x(_PIPE, (ref, _reader_ref(reader)))


def _reader_ref(reader: tuple[int, str]) -> Ref:
    packed, path = reader
    return (packed >> 25, (packed >> 2) & ((1 << 23) - 1), EXEC, path)


def _pipe_reader(tree: "TreeHistory", ino: int, ref: Ref, m: SessionMarks) -> None:
    """A shell reading its program from pipe ``ino``: pair it with a writer seen before, or wait
    for one (the two sides of ``curl | sh`` exec in either order)."""
    for tgid, image in tree.procs.items.items():        # rare: code-reading shells on a pipe
        if len(image) == 3 and image[2] == ino and image[0] & P_NETFED:
            m.hit_x(_PIPE, ((image[0] >> 25, tgid, EXEC, image[1]), ref))
            return
    tree.remember(tree.signals().readers, ino, (pack(ref[0], ref[1], EXEC), ref[3]), ref, m)


def connected(tree: "TreeHistory", tgid: int, ref: Ref, m: SessionMarks) -> None:
    """A connect (or UDP send): its process now feeds its stdout pipe from the network."""
    items = tree.procs.items
    image = items.get(tgid)
    if image is None or image[0] & P_NETFED:
        return
    items[tgid] = image = (image[0] | P_NETFED, *image[1:])
    sig = tree.sig
    if sig is not None and len(image) == 3:
        reader = sig.readers.items.get(image[2])
        if reader is not None:
            m.hit_x(_PIPE, ((image[0] >> 25, tgid, EXEC, image[1]), _reader_ref(reader), ref))


def loader_hijack(tree: "TreeHistory", ld_env: dict[str, Any], ts: int) -> tuple[bool, Ref | None]:
    """Is this exec's loader environment a hijack, and the write behind it (evidence, or None):
    an ``LD_PRELOAD``/``LD_AUDIT`` library that is relative, outside system_dirs or written by the
    tree (:func:`preload_injection`); an ``LD_LIBRARY_PATH`` directory the tree wrote a shared
    library into (a relative or empty entry, resolved against a cwd the analyzer does not know:
    any such write)."""
    lib_path = _lib_path(ld_env)
    hijack, write = preload_injection(tree, ld_env, lib_path, ts)
    if hijack:
        return True, write
    sig = tree.sig
    if sig is None or not sig.lib_dirs.items:
        return False, None
    for d in lib_path:
        if d.startswith("/"):
            hit = sig.lib_dirs.get(path_key(normalise(d)), ts, tree.c.horizon_ns)
            if hit is not None:
                return True, _write_ref(hit, normalise(d))
        else:
            latest = next(reversed(sig.lib_dirs.items.values()))
            if abs(ts - (latest >> 25)) <= tree.c.horizon_ns:
                return True, _write_ref(latest, d or ".")
    return False, None


def _lib_path(ld_env: dict[str, Any]) -> list[str]:
    if "LD_LIBRARY_PATH" not in ld_env:
        return []
    return text(ld_env.get("LD_LIBRARY_PATH")).replace(";", ":").split(":")


def preload_injection(tree: "TreeHistory", ld_env: dict[str, Any], lib_path: list[str],
                      ts: int) -> tuple[bool, Ref | None]:
    """An ``LD_PRELOAD``/``LD_AUDIT`` library that is relative, outside system_dirs or written by
    the tree, or a bare library name while ``LD_LIBRARY_PATH`` leaves the system directories:
    code forced into a program that did not ask for it. ``execution.preload_injection`` keeps
    this apart from an ``LD_LIBRARY_PATH`` pointing at a fresh build (a developer running a
    program against its own library), so a rule can weigh the two differently."""
    in_system = tree.classes.in_system_dir
    for var in _LD_FILES:
        for entry in text(ld_env.get(var)).replace(":", " ").split():
            if "/" not in entry:
                if any(not d.startswith("/") or not in_system(normalise(d) + "/") for d in lib_path):
                    return True, None
                continue
            if not entry.startswith("/"):
                return True, None
            path = normalise(entry)
            written = tree.written_ref(path, ts)
            if written is not None or not in_system(path):
                return True, written
    return False, None


def _write_ref(packed: int, path: str) -> Ref:
    return (packed >> 25, (packed >> 2) & ((1 << 23) - 1), "open", path)


def library_written(tree: "TreeHistory", path: str, packed: int, ref: Ref, m: SessionMarks) -> None:
    """A shared library was written: its directory can now hijack an LD_LIBRARY_PATH."""
    name = basename(path)
    if name.endswith(".so") or ".so." in name:
        tree.remember(tree.signals().lib_dirs, path_key(path.rsplit("/", 1)[0] or "/"), packed, ref, m)


# ---------------------------------------------------------------- other kinds

def signal_event(tree: "TreeHistory", kind: str, ev: dict[str, Any], proc: ProcessState,
                 ref: Ref, m: SessionMarks) -> None:
    """memfd, socket, ptrace, vm_read, listen, bind (successful calls only)."""
    if int_field(ev.get("ret"), 0) < 0:
        return                                    # refused: nothing was created or read
    if kind == "memfd":
        m.hit(_MEMFD, (ref,))
    elif kind == "socket":
        m.hit(_RAW, (ref,))
    elif kind == "ptrace":
        if int_field(ev.get("request"), -1) != PTRACE_TRACEME and _foreign(tree, ev, ev.get("target")):
            m.hit(_FOREIGN, (ref,))
            tree.secret_read(ref, m)
    elif kind == "vm_read":
        if _foreign(tree, ev, ev.get("target")):
            m.hit(_FOREIGN, (ref,))
            tree.secret_read(ref, m)
    elif kind == "listen" or kind == "bind":
        _listening(tree, kind, ev, proc, ref, m)


def setuid_chmod(ev: dict[str, Any], ref: Ref, m: SessionMarks) -> None:
    """A successful chmod that sets S_ISUID or S_ISGID."""
    if int_field(ev.get("ret"), 0) >= 0 and int_field(ev.get("mode")) & S_ISUID_GID:
        m.hit(_SETUID, (ref,))


def _foreign(tree: "TreeHistory", ev: dict[str, Any], target: Any) -> bool:
    """The target pid is outside the tree: the sessionizer's ``target_in_tree``; without it, a
    pid that is neither the caller nor a process the tree exec'd."""
    flag = ev.get("target_in_tree")
    if type(flag) is bool:
        return not flag
    return type(target) is int and target > 0 and target != ev.get("tgid") \
        and target not in tree.procs.items


def foreign_open(tree: "TreeHistory", path: str, ev: dict[str, Any], exe: str, m: SessionMarks,
                 ref: Ref) -> None:
    """An open of /proc/<pid>/{mem,environ,maps} of a process outside the tree. A system process
    lister (``ps e``, ``lsof``) reading environ or maps is routine; mem never is."""
    target = proc_target(path)
    if target is None or int_field(ev.get("ret"), 0) < 0 or not _foreign(tree, ev, target[0]):
        return
    if target[1] != "mem" and basename(exe) in PROCESS_LISTERS and tree.classes.in_system_dir(exe):
        return
    m.hit(_FOREIGN, (ref,))
    tree.secret_read(ref, m)                      # its secrets pair with a connect like a key's


def _listening(tree: "TreeHistory", kind: str, ev: dict[str, Any], proc: ProcessState, ref: Ref,
               m: SessionMarks) -> None:
    """A socket bound to a port, or listening, on a non-loopback address; a shell, or an
    interpreter running inline or stdin code (not a script file or a module), listening so."""
    addr = text(ev.get("addr"))
    if is_loopback(addr) or (kind == "bind" and not int_field(ev.get("port"))):
        return
    tree.signals().last_listen = ref
    if kind != "listen":
        return
    image = tree.image_of(ev["tgid"], proc)
    name = basename(image)
    family = tree.family(name)
    if family == "shell" or (family is not None and basename(proc.exec_path) == name
                             and program_source(family, proc.args)[0] in (INLINE, STDIN)):
        m.hit(_BIND, (ref,))


def udp_send(tree: "TreeHistory", ev: dict[str, Any], ref: Ref, m: SessionMarks) -> None:
    """Bytes and distinct DNS query names to one destination within the window."""
    c, ts = tree.c, ref[0]
    window = max(c.udp_window_ns, 8)
    index = tree.signals().udp
    dest = index.items.get(ref[3])
    if dest is None:
        dest = [0, [0] * 18, None]
    dest[0] = ts << 25
    width = window // 8
    cur = ts // width
    slots = dest[1]
    at = 2 * (cur % 9)
    if slots[at] != cur:
        slots[at], slots[at + 1] = cur, 0
    slots[at + 1] += max(0, int_field(ev.get("bytes")))
    total = sum(slots[i + 1] for i in range(0, 18, 2) if slots[i] >= cur - 8)
    if total >= c.udp_bytes:
        m.hit(_UDP, (ref,))
    qhash = ev.get("dns_qname_hash")
    if type(qhash) is int:
        names = dest[2] if dest[2] is not None else {}
        dest[2] = names
        now_s = ts // 1_000_000_000
        names.pop(qhash, None)
        names[qhash] = now_s
        for old in [h for h, t in names.items() if t < now_s - window // 1_000_000_000]:
            del names[old]
        if len(names) >= c.udp_names:
            m.hit(_UDP, (ref,))
        while len(names) > c.udp_names:
            del names[next(iter(names))]
    tree.remember(index, ref[3], dest, ref, m, horizon_ns=window)

