"""Who started whom, per agent tree: two history fields about a process and its parent.

* ``burst_interpreter_exec``: shells or interpreters started by a shell or interpreter, in a
  burst (``sh -c`` in a loop), not a Makefile's recipes or an installed tool's script;
* ``inline_network_spawn``: a program started by inline code that connected out first.

Both read the parent's image from the tree's process index (``TreeHistory.procs``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from analyzer import tree_signals as sig
from analyzer.evidence import Ref
from analyzer.history_flags import HISTORY_BIT
from analyzer.scripts import SCRIPT, program_source
from analyzer.session_state import EXEC, ProcessState, RecentEvent, basename, int_field, text
from analyzer.tree_index import SessionMarks
from bus.paths import normalise

if TYPE_CHECKING:
    from analyzer.tree_history import TreeHistory

__all__ = ["interpreter_burst", "inline_network_spawn"]

B_INTERP, INS = HISTORY_BIT["burst_interpreter_exec"], HISTORY_BIT["inline_network_spawn"]


def inline_network_spawn(tree: "TreeHistory", ev: dict[str, Any], ref: Ref, m: SessionMarks) -> None:
    """inline_network_spawn: the parent is a shell or interpreter running inline code
    (``python3 -c``, ``perl -e``, ``node -e``, ``sh -c``) that connected out or sent before
    this exec: code that fetches and then runs programs without a file an exec could name
    (``exec(urlopen(...).read())`` starting ``id``). A network tool's own children, or a
    script file's, are not this (their code is on disk for write->exec and the operand)."""
    if m.bits & INS:
        return
    ppid = int_field(ev.get("ppid"), -1)
    parent = tree.procs.items.get(ppid)
    want = sig.P_INLINE | sig.P_NETFED
    if parent is not None and parent[0] & want == want and not parent[0] & sig.P_AGENT:
        m.hit(INS, ((parent[0] >> 25, ppid, EXEC, parent[1]), ref))


def interpreter_burst(tree: "TreeHistory", e: RecentEvent, ev: dict[str, Any], proc: ProcessState,
                      family: str | None, ref: Ref, m: SessionMarks) -> None:
    """burst_interpreter_exec: a shell or interpreter (by name; or a ``#!`` script, whose
    exec's (dev, ino) is a system interpreter's) started by a shell or interpreter. An
    installed tool's script (``node /usr/bin/npm``, ``/usr/bin/pip``) is not a step."""
    from analyzer.tree_history import identity
    if family is not None:
        kind, script = program_source(family, proc.args)
        installed = kind == SCRIPT and bool(script) and script.startswith("/") \
            and tree.classes.in_system_dir(normalise(script))
    else:
        ident = identity(ev)
        if ident is None or ident not in tree.classes.interpreter_ids:
            return
        installed = tree.classes.in_system_dir(e.path)
    if not installed and _parent_shellish(tree, ev):
        hit = tree.bursts[3].push(ref)
        if hit is not None:
            m.hit(B_INTERP, hit)


def _parent_shellish(tree: "TreeHistory", ev: dict[str, Any]) -> bool:
    """Its parent is a shell or interpreter (a role wrapper counts; the runtime's own image
    does not), or a program from outside system_dirs (a script run by its ``#!``, whatever
    its name); unknown to the tree: the comm it had before this exec (a fork's is its
    parent's)."""
    parent = tree.procs.items.get(int_field(ev.get("ppid"), -1))
    if parent is not None:
        image = parent[1]
        return not parent[0] & sig.P_AGENT and (tree.family(basename(image)) is not None
                                               or not tree.classes.in_system_dir(image))
    return tree.family(text(ev.get("comm"))) is not None
