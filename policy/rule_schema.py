"""rules.json ``rules``: each rule's fields, their documented defaults, and its expression check.

A rule is ``{"name", "expr", "weight", "enabled", "description", "tags"}`` (or the legacy
``feature``/``match``/``min_value`` form instead of ``expr``). ``name`` and an expression are
required; the others have documented defaults (:data:`RULE_DEFAULTS`), and a rule that leaves
one out gets a **note** saying which default applies (``casa rules check`` prints them), not a
warning: it is a valid rule. What cannot work is an **error**: a wrong type, a tag that is not an
ATT&CK id, and an enabled rule's expression that does not compile, names a variable or context
field that does not exist, or compares values of different types (policy/cel_check.py), because
each would be a rule that silently never matches. A disabled rule is checked too; its problems
are warnings (nothing evaluates it until it is enabled).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from policy.expressions import check_expr
from policy.locate import Locator

__all__ = ["Rule", "Report", "parse_rules", "type_name", "is_int", "RULE_KEYS", "RULE_DEFAULTS",
           "TAG_PATTERN"]

LEGACY_MATCHES = ("", "bool_true", "number_gte")
RULE_KEYS = frozenset({"name", "description", "expr", "weight", "enabled", "feature", "match",
                       "min_value", "tags", "response"})
# ATT&CK technique (T1059, T1059.004) or tactic (TA0002) ids, the vocabulary of rule tags.
TAG_PATTERN = re.compile(r"^(T\d{4}(\.\d{3})?|TA\d{4})$")
# field -> (default, what it means), as docs/rules.md documents them
RULE_DEFAULTS: dict[str, tuple[Any, str]] = {
    "enabled": (False, "so the rule is disabled (the original's default; add \"enabled\": true)"),
    "weight": (0, "so the rule never adds to a session's score"),
    "description": ("", "so decisions and the README show no description"),
    "tags": ((), "so the rule names no ATT&CK technique"),
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule; ``expr`` is the effective CEL (built from legacy feature/match/min_value if needed)."""

    name: str
    expr: str
    weight: int
    enabled: bool
    description: str = ""
    line: int | None = None
    tags: tuple[str, ...] = ()       # ATT&CK technique/tactic ids
    response: Any = None             # policy.response.Response of this rule; None: the top level's


@dataclass(slots=True)
class Report:
    """Collects located problems (and notes) while one document is validated."""

    source: str
    loc: Locator
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def where(self, line: int | None) -> str:
        return f"{self.source}:{line}" if line else self.source

    def error(self, line: int | None, msg: str) -> None:
        self.errors.append(f"{self.where(line)}: {msg}")

    def warn(self, line: int | None, msg: str) -> None:
        self.warnings.append(f"{self.where(line)}: {msg}")

    def note(self, line: int | None, msg: str) -> None:
        self.notes.append(f"{self.where(line)}: {msg}")


def type_name(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_rules(raw: Any, rep: Report) -> tuple[Rule, ...]:
    if raw is None:
        rep.warn(None, "no rules: nothing will ever be scored")
        return ()
    if not isinstance(raw, list):
        rep.error(rep.loc.key_line("rules"), f"rules must be an array, not {type_name(raw)}")
        return ()
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and name in seen:
            rep.error(rep.loc.rule_line(i), f"rule '{name}' (rule #{i + 1}): duplicate name; "
                                            f"rule #{seen[name] + 1} already uses it")
            continue
        if isinstance(name, str):
            seen[name] = i
        rule = _rule(i, item, rep)
        if rule is not None:
            rules.append(rule)
    return tuple(rules)


def _rule(i: int, item: Any, rep: Report) -> Rule | None:
    line = rep.loc.rule_line(i)
    if not isinstance(item, dict):
        rep.error(line, f"rule #{i + 1} must be an object, not {type_name(item)}")
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        rep.error(rep.loc.rule_line(i, "name"), f"rule #{i + 1}: name is required (a non-empty string)")
        return None
    label = f"rule '{name}'"
    n_errors = len(rep.errors)
    for key in sorted(set(item) - RULE_KEYS):
        rep.warn(rep.loc.rule_line(i, key), f"{label}: unknown field '{key}' is ignored")
    for key, (default, meaning) in RULE_DEFAULTS.items():
        if key not in item:
            rep.note(line, f"{label}: no '{key}', so the default {_shown(default)} applies, {meaning}")
    description = _typed(item, "description", str, "", i, label, rep)
    tags = _tags(item, i, label, rep)
    weight = _typed(item, "weight", int, 0, i, label, rep)
    enabled = _typed(item, "enabled", bool, False, i, label, rep)
    expr = _effective_expr(item, i, label, rep)
    response = None
    if "response" in item:
        from policy.response import parse_response     # response imports this module
        response = parse_response(item["response"], f"{label}: response",
                                  rep.loc.rule_line(i, "response") or line, rep)
    if expr is not None:
        _check(expr, enabled, item, i, label, rep)
    if len(rep.errors) > n_errors or expr is None:
        return None
    return Rule(name=name, expr=expr, weight=weight, enabled=enabled, description=description,
                line=line, tags=tags, response=response)


def _shown(default: Any) -> str:
    return json.dumps(list(default) if isinstance(default, tuple) else default)


def _check(expr: str, enabled: bool, item: dict[str, Any], i: int, label: str, rep: Report) -> None:
    """The expression's problems: errors for an enabled rule, warnings for a disabled one."""
    line = rep.loc.rule_line(i, "expr" if item.get("expr") else "feature")
    for msg in check_expr(expr).errors:
        if enabled:
            rep.error(line, f"{label} expr {msg}")
        else:
            rep.warn(line, f"{label} (disabled) expr {msg}")


def _tags(item: dict[str, Any], i: int, label: str, rep: Report) -> tuple[str, ...]:
    """``tags``: ATT&CK ids (``T1059.004``, ``TA0011``); anything else is an error naming it."""
    value = item.get("tags", [])
    line = rep.loc.rule_line(i, "tags")
    if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
        rep.error(line, f"{label}: tags must be a list of ATT&CK ids such as \"T1059.004\"")
        return ()
    bad = [t for t in value if not TAG_PATTERN.match(t)]
    if bad:
        rep.error(line, f"{label}: tags {bad} are not ATT&CK technique or tactic ids "
                        "(T1234, T1234.567 or TA1234)")
        return ()
    return tuple(value)


def _typed(item: dict[str, Any], key: str, kind: type, default: Any, i: int, label: str,
           rep: Report) -> Any:
    value = item.get(key, default)
    ok = is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        names = {int: "an integer", bool: "true or false", str: "a string"}
        rep.error(rep.loc.rule_line(i, key), f"{label}: {key} must be {names[kind]}, not {type_name(value)}")
        return default
    return value


def _effective_expr(item: dict[str, Any], i: int, label: str, rep: Report) -> str | None:
    """``expr``, or the legacy feature/match/min_value form (docs/original.md §9.1)."""
    expr = item.get("expr", "")
    if not isinstance(expr, str):
        rep.error(rep.loc.rule_line(i, "expr"), f"{label}: expr must be a string, not {type_name(expr)}")
        return None
    if expr.strip():
        return expr.strip()
    feature, match = item.get("feature", ""), item.get("match", "")
    if not isinstance(feature, str) or not feature.strip():
        rep.error(rep.loc.rule_line(i, "expr"), f"{label}: needs an expr (or a legacy feature)")
        return None
    if match not in LEGACY_MATCHES:
        rep.error(rep.loc.rule_line(i, "match"), f"{label}: match must be one of \"\", "
                                                 f"\"bool_true\", \"number_gte\", not {match!r}")
        return None
    if match == "number_gte":
        min_value = item.get("min_value")
        if isinstance(min_value, bool) or not isinstance(min_value, (int, float)):
            rep.error(rep.loc.rule_line(i, "min_value") if "min_value" in item else rep.loc.rule_line(i, "match"),
                      f"{label}: match \"number_gte\" requires a numeric min_value")
            return None
        bound = int(min_value) if float(min_value).is_integer() else min_value
        return f"{feature.strip()} >= {bound}"
    return feature.strip()
