"""Memory of the analyzer's per-tree history with every index at its cap (issue 11).

    python -m bench.history_memory [--trees 20] [--cap 4096] [--rules rules.json]

The worst case the caps allow: every session its own agent tree, and in every tree each index
full to its own cap (analyzer/tree_index.py, TreeConfig): ``history_index_cap`` written files
with their (dev, ino) identities, some of them shared libraries in distinct directories (the
LD_LIBRARY_PATH index); as many live processes as the image index holds, each with a stdout
pipe, of which the pending-script index's worth run ``python3 script.py`` and the pipe-reader
index's worth are shells reading their program from a pipe; and the UDP index's worth of
destinations each sent the threshold's worth of distinct DNS names. The trees are filled through
the real analyzer core with such events; tracemalloc measures what the core holds, once with the
sessions open and again after they closed (a closed session's tree is kept for the horizon,
so the second figure is the trees alone). Linear in the number of trees, so ``--trees`` trees
are measured and scaled to 1,000.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tracemalloc
from typing import Any

from bench.stages import CHECKOUT

__all__ = ["measure"]

S = 1_000_000_000
MB = 1024 * 1024


def _tree_events(tree: int, c: Any, names: int) -> list[dict[str, Any]]:
    """Events filling every index of one tree to its cap (one session per tree)."""
    base = {"session_id": tree + 1, "tree_id": tree, "shard": tree, "uid": 1000, "root": 1,
            "profile": "bench-agent", "ppid": 1, "comm": "python3"}
    out: list[dict[str, Any]] = []
    for i in range(c.cap):
        lib = i < c.small_cap                   # a library, each in its own directory
        path = (f"/home/agent/project-{tree:04d}/build/lib{i:04d}/libstep.so" if lib else
                f"/home/agent/project-{tree:04d}/build/output/object_{i:06d}.o")
        out.append({**base, "kind": "open", "ts_ns": S + i * 1000, "tgid": 2, "tid": 2, "flags": 0x241,
                    "path": path, "ino": 1_000_000 + i, "dev": 2049, "mode": 0o644})
    for i in range(c.procs_cap):
        out.append(_exec(base, 10_000 + i, 2 * S + i * 1000, i, c))
    for d in range(c.udp_cap):
        for n in range(names):
            out.append({**base, "kind": "send", "ts_ns": 3 * S + (d * names + n) * 1000, "tgid": 2,
                        "tid": 2, "syscall": "sendto", "ret": 60, "family": 2, "addr": f"10.1.{d // 250}.{d % 250}",
                        "port": 53, "bytes": 60, "sock_type": 2, "dns_qname_len": 40,
                        "dns_qname_hash": (d << 20) + n})
    return out


def _exec(base: dict[str, Any], tgid: int, ts: int, i: int, c: Any) -> dict[str, Any]:
    """A live process: a python3 with a pending script, a shell reading a pipe, or a tool; each
    with a stdout pipe (the larger image entry)."""
    if i < c.scripts_cap:
        path, argv = "/usr/bin/python3", ["python3", f"tools/step_{i:06d}.py"]
    elif i < c.scripts_cap + c.small_cap:
        path, argv = "/bin/sh", ["sh", "-s"]
    else:
        path, argv = "/usr/bin/make", ["make", f"target_{i:06d}"]
    stdin = {"type": "pipe", "ino": 500_000 + i} if path == "/bin/sh" else {"type": "tty"}
    return {**base, "kind": "exec", "ts_ns": ts, "tgid": tgid, "tid": tgid, "path": path, "exe": path,
            "argv": argv, "cap_eff": 0, "seccomp": 0, "lineage": [{"tgid": tgid, "ppid": 1, "comm": "x"}],
            "depth": 1, "stdio": [stdin, {"type": "pipe", "ino": 900_000 + i}, {"type": "tty"}]}


def _held_mb() -> float:
    gc.collect()
    return tracemalloc.get_traced_memory()[0] / MB


def measure(trees: int = 20, cap: int | None = None, rules: str | None = None) -> dict[str, Any]:
    """MB per 1,000 sessions (and per 1,000 trees alone) with every index at its cap."""
    from analyzer.core import Analyzer
    from policy import load_policy
    policy = load_policy(rules or CHECKOUT / "rules.json")
    if cap:
        policy = dataclasses.replace(policy, analysis=dataclasses.replace(policy.analysis, history_index_cap=cap))
    cap = policy.analysis.history_index_cap
    tracemalloc.start()
    try:
        before = _held_mb()
        core = Analyzer(policy)
        c = core.trees.c
        for tree in range(trees):
            for ev in _tree_events(tree, c, policy.analysis.udp_exfil_names):
                core.handle(("sessionizer.event", ev), 0)
        with_sessions = _held_mb() - before
        full = [_filled(t) for t in core.trees.trees.values()]
        for tree in range(trees):
            core.handle(("sessionizer.session", {"kind": "session", "state": "closed",
                                                 "session_id": tree + 1, "shard": tree}), 0)
        trees_only = _held_mb() - before
    finally:
        tracemalloc.stop()
    want = (c.cap, c.cap, c.procs_cap, c.scripts_cap, c.small_cap, c.small_cap, c.udp_cap)
    assert all(n == want for n in full), f"an index was not filled to its cap: {full[0]} != {want}"
    scale = 1000 / trees
    return {"history_mb_per_1000_sessions_at_cap": round(with_sessions * scale, 1),
            "detail": {"history_index_cap": cap, "trees_measured": trees,
                       "trees_only_mb_per_1000": round(trees_only * scale, 1),
                       "index_caps": dict(zip(("written", "written_ids", "procs", "scripts", "readers",
                                               "lib_dirs", "udp"), want)),
                       "overflows": core.stats()["history_overflows"]}}


def _filled(t: Any) -> tuple[int, ...]:
    sig = t.sig
    return (len(t.written.items), len(t.written_ids.items), len(t.procs.items), len(t.scripts.items),
            len(sig.readers.items), len(sig.lib_dirs.items), len(sig.udp.items))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.history_memory")
    p.add_argument("--trees", type=int, default=20)
    p.add_argument("--cap", type=int, default=None, help="history_index_cap (default: the rules file's)")
    p.add_argument("--rules", default=None)
    args = p.parse_args(argv)
    print(measure(args.trees, args.cap, args.rules))
    return 0


if __name__ == "__main__":
    sys.exit(main())
