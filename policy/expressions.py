"""The CEL vocabulary rules are written in (docs/original.md §8.7) and a compile-time check.

Rules see exactly four variables: ``session_id`` (int) and the maps ``execution``, ``capability``
and ``history``. cel-go, which the original used, type-checks against declared variables at
compile time; cel-python only parses, so :func:`check_expr` walks the parse tree to restore that
check: an undeclared variable, a field that does not exist (``execution.memfd_exec``), operands
of the wrong type (``history.burst_exec > 3``) and an expression that is not a bool are errors
(policy/cel_check.py): each would be a rule that silently never matches.
"""

from __future__ import annotations

import logging

import celpy
from lark import Tree

from policy.cel_check import check_types

__all__ = ["FEATURES", "VARIABLES", "CelCheck", "check_expr", "referenced_fields"]

# Group -> field -> CEL type name, exactly what the analyzer builds (analyzer/context.py).
FEATURES: dict[str, dict[str, str]] = {
    "execution": {
        "suspicious_path_exec": "bool", "deep_chain": "bool", "shell_in_chain": "bool",
        "network_tool_in_chain": "bool", "interpreter_in_chain": "bool",
        "container_runtime_in_chain": "bool", "memfd_or_deleted_exec": "bool",
        # beyond the original (docs/rules.md)
        "reverse_shell": "bool", "pipe_to_shell": "bool", "loader_hijack": "bool",
        "masquerade": "bool", "hidden_path_exec": "bool", "unresolved_exec": "bool",
        "preload_injection": "bool",
    },
    "capability": {"has_dangerous_caps": "bool", "dangerous_count": "int", "seccomp_disabled": "bool",
                   "gained_dangerous_caps": "bool", "privilege_gained": "bool"},
    "history": {
        "connect_then_exec": "bool", "sensitive_then_network": "bool",
        "sensitive_then_execve": "bool", "burst_open": "bool", "burst_connect": "bool",
        "burst_exec": "bool", "write_then_exec_same_path": "bool", "opened_deleted_path": "bool",
        # beyond the original (docs/rules.md)
        "overflow": "bool", "credential_access": "bool", "credential_then_network": "bool",
        "persistence_write": "bool", "setuid_created": "bool", "foreign_process_read": "bool",
        "log_tampering": "bool", "security_tool_discovery": "bool", "udp_exfil": "bool",
        "raw_socket": "bool", "bind_shell": "bool", "shell_network": "bool",
        "memfd_created": "bool", "written_then_interpreted": "bool",
        "burst_interpreter_exec": "bool", "inline_network_spawn": "bool",
        "discovery_burst": "bool", "bulk_replace": "bool",
    },
}
VARIABLES: frozenset[str] = frozenset({"session_id", *FEATURES})

# CEL macros whose first argument binds a loop variable: `list.all(x, x > 0)`.
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})

logging.getLogger("celpy").setLevel(logging.WARNING)
logging.getLogger("lark").setLevel(logging.WARNING)


class CelCheck:
    """Result of checking one expression: ``tree`` is None when it does not compile."""

    __slots__ = ("tree", "errors", "warnings")

    def __init__(self) -> None:
        self.tree: Tree | None = None
        self.errors: list[str] = []
        self.warnings: list[str] = []


def check_expr(expr: str) -> CelCheck:
    """Parse ``expr`` and check its variables and fields against :data:`FEATURES`."""
    out = CelCheck()
    try:
        out.tree = celpy.Environment(runner_class=celpy.CompiledRunner).compile(expr)
    except celpy.CELParseError as exc:
        out.errors.append("does not compile: " + _parse_problem(expr, exc))
        return out
    except Exception as exc:  # noqa: BLE001 - lark raises several unrelated types on odd input
        out.errors.append(f"does not compile: {type(exc).__name__}: {exc}")
        return out
    bound = _bound_names(out.tree)
    for name in sorted(_idents(out.tree) - VARIABLES - bound):
        out.errors.append(f"uses undeclared variable '{name}' (rules see session_id, execution, "
                          "capability, history)")
    out.errors.extend(check_types(out.tree, FEATURES))
    return out


def _parse_problem(expr: str, exc: Exception) -> str:
    """``unexpected ')' at column 11 of 'history.x ) '`` from cel-python's (lark's) error."""
    column = getattr(exc, "column", None)
    cause = exc.__cause__ or exc.__context__
    token = getattr(cause, "token", None)
    if token is not None and getattr(token, "type", "") == "$END":
        what = "unexpected end of expression"
    elif token is not None:
        what = f"unexpected {str(token)!r}"
    else:
        what = "unexpected character"
    where = f" at column {column}" if isinstance(column, int) else ""
    return f"{what}{where} of {expr!r}"


def _idents(tree: Tree) -> set[str]:
    return {str(t.children[0]) for t in tree.iter_subtrees() if t.data == "ident"}


def _bound_names(tree: Tree) -> set[str]:
    names: set[str] = set()
    for t in tree.iter_subtrees():
        if t.data != "member_dot_arg" or len(t.children) < 3:
            continue
        if str(t.children[1]) in _MACROS and isinstance(t.children[2], Tree):
            first = next((s for s in t.children[2].iter_subtrees_topdown() if s.data == "ident"), None)
            if first is not None:
                names.add(str(first.children[0]))
    return names


def _fields(tree: Tree) -> set[tuple[str, str]]:
    """(group, field) for every ``group.field`` selection on a feature map."""
    found: set[tuple[str, str]] = set()
    for t in tree.iter_subtrees():
        if t.data != "member_dot" or len(t.children) != 2:
            continue
        base, name = t.children
        if isinstance(base, Tree) and base.data == "member" and len(base.children) == 1:
            prim = base.children[0]
            if (isinstance(prim, Tree) and prim.data == "primary" and isinstance(prim.children[0], Tree)
                    and prim.children[0].data == "ident"):
                group = str(prim.children[0].children[0])
                if group in FEATURES:
                    found.add((group, str(name)))
    return found


def referenced_fields(expr: str) -> tuple[str, ...]:
    """``group.field`` names a (compilable) expression selects, sorted; () if it does not compile.

    The analyzer attaches the evidence of exactly these fields to a decision (docs/analyzer.md).
    """
    tree = check_expr(expr).tree
    if tree is None:
        return ()
    return tuple(sorted(f"{g}.{f}" for g, f in _fields(tree) if f in FEATURES[g]))
