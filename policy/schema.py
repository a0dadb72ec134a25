"""rules.json: schema, validation and loading (casa-original.md §9.1, §8.1, §13).

Usage::

    from policy import load_policy, PolicyError
    policy = load_policy("rules.json")        # raises PolicyError with every problem, located
    policy.analysis.burst_exec_threshold      # effective value (code default if 0/missing)
    policy.thresholds.alert, policy.rules, policy.version

The document is ``{"analysis": {...}, "thresholds": {"log", "alert"}, "rules": [...]}``. Unknown
keys are ignored as in the original, but reported in ``Policy.warnings`` so a typo is visible.
Validation collects every problem before failing, so ``casa rules check`` can list them all.

Caveats kept from the original on purpose: a rule without ``enabled`` is disabled (Go's zero
value), missing thresholds are 0, and a 0 or empty heuristic silently means "code default".
Deviation: a negative count or window is an error here instead of a silent fallback.
"""

from __future__ import annotations

import hashlib
import re
import ipaddress
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.defaults import (CHOICE_DEFAULTS, INT_DEFAULTS, LIST_DEFAULTS, MAP_DEFAULTS,
                             NO_DEFAULT_LISTS, PORT_LIST_FIELDS, REQUIRED_INTS, apply_default)
from policy.expressions import check_expr
from policy.locate import Locator

__all__ = ["Analysis", "Thresholds", "Rule", "Policy", "PolicyError", "load_policy", "parse_policy",
           "VERSION_HEX_CHARS", "describe"]

VERSION_HEX_CHARS = 12          # Policy.version: this many hex digits of sha256(file bytes)
LEGACY_MATCHES = ("", "bool_true", "number_gte")
RULE_KEYS = frozenset({"name", "description", "expr", "weight", "enabled", "feature", "match",
                       "min_value", "tags"})
# ATT&CK technique (T1059, T1059.004) or tactic (TA0002) ids, the vocabulary of rule tags.
TAG_PATTERN = re.compile(r"^(T\d{4}(\.\d{3})?|TA\d{4})$")
TOP_KEYS = frozenset({"analysis", "thresholds", "rules"})

log = logging.getLogger("casa.policy")


class PolicyError(ValueError):
    """rules.json is unusable. ``problems`` lists each error as a located one-line message."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True, slots=True)
class Analysis:
    """Effective heuristics: attribute names are the rules.json ``analysis`` keys (§8.1)."""

    lineage_max_depth: int
    recent_event_limit: int
    max_per_process_artifacts: int
    deep_chain_threshold: int
    burst_open_threshold: int
    burst_connect_threshold: int
    burst_exec_threshold: int
    burst_window_seconds: int
    sensitive_history_window_seconds: int
    configured_connect_refresh_seconds: int
    suspicious_path_patterns: tuple[str, ...]
    sensitive_path_prefixes: tuple[str, ...]
    sensitive_path_patterns: tuple[str, ...]
    shell_names: tuple[str, ...]
    network_tool_names: tuple[str, ...]
    interpreter_names: tuple[str, ...]
    container_runtime_names: tuple[str, ...]
    dangerous_capability_names: tuple[str, ...]
    llm_provider_urls: tuple[str, ...]
    channel_urls: tuple[str, ...]
    known_cidrs: tuple[str, ...]
    ignored_connect_ips: tuple[str, ...]       # only the parsable ones (others are warned about)
    allowed_loopback_ports: tuple[int, ...]
    # Beyond the original (docs/rules.md).
    history_mode: str = "indexed"              # "indexed" | "original" (last-N window parity)
    history_horizon_seconds: int = 600
    history_index_cap: int = 4096
    udp_exfil_bytes: int = 4096
    udp_exfil_names: int = 20
    udp_exfil_window_seconds: int = 60
    system_dirs: tuple[str, ...] = LIST_DEFAULTS["system_dirs"]
    credential_paths: tuple[str, ...] = LIST_DEFAULTS["credential_paths"]
    persistence_paths: tuple[str, ...] = LIST_DEFAULTS["persistence_paths"]
    log_paths: tuple[str, ...] = LIST_DEFAULTS["log_paths"]
    security_tool_names: tuple[str, ...] = LIST_DEFAULTS["security_tool_names"]
    # pattern -> legitimate readers, as (pattern, names) pairs (hashable)
    credential_consumers: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
        (k, v) for k, v in MAP_DEFAULTS["credential_consumers"].items())


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Cumulative-score thresholds of §10: LOG at ``log``, ALERT at ``alert`` (alert >= log >= 0)."""

    log: int
    alert: int


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


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated rules.json. ``version`` identifies the exact file bytes (decisions carry it)."""

    analysis: Analysis
    thresholds: Thresholds
    rules: tuple[Rule, ...]
    version: str
    source: str = "rules.json"
    warnings: tuple[str, ...] = ()

    @property
    def enabled_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)


@dataclass(slots=True)
class _Report:
    """Collects located problems while one document is validated."""

    source: str
    loc: Locator
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def where(self, line: int | None) -> str:
        return f"{self.source}:{line}" if line else self.source

    def error(self, line: int | None, msg: str) -> None:
        self.errors.append(f"{self.where(line)}: {msg}")

    def warn(self, line: int | None, msg: str) -> None:
        self.warnings.append(f"{self.where(line)}: {msg}")


def load_policy(path: str | Path, log_warnings: bool = True) -> Policy:
    """Read and validate ``path``; raise PolicyError naming the file (and line) of each problem.

    Warnings (unknown keys, disabled-by-omission rules) are logged unless ``log_warnings`` is
    False; they are always in ``Policy.warnings``.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise PolicyError(str(p), [f"{p}: cannot read: {exc.strerror or exc}"]) from None
    policy = parse_policy(data, str(p))
    for w in policy.warnings if log_warnings else ():
        log.warning("rules file warning | %s", w)
    return policy


def parse_policy(data: bytes, source: str = "rules.json") -> Policy:
    """Validate the bytes of a rules file (no I/O); ``source`` prefixes every message."""
    version = hashlib.sha256(data).hexdigest()[:VERSION_HEX_CHARS]
    doc, text = _decode(data, source)
    rep = _Report(source, Locator.scan(text))
    if not isinstance(doc, dict):
        raise PolicyError(source, [f"{source}:1: top level must be an object with analysis, "
                                   f"thresholds and rules, not {_type(doc)}"])
    for key in sorted(set(doc) - TOP_KEYS):
        rep.warn(rep.loc.key_line(key), f"unknown top-level key '{key}' is ignored")
    analysis = _analysis(doc.get("analysis"), rep)
    thresholds = _thresholds(doc.get("thresholds"), rep)
    rules = _rules(doc.get("rules"), rep)
    if rep.errors:
        raise PolicyError(source, rep.errors)
    assert analysis is not None and thresholds is not None
    return Policy(analysis=analysis, thresholds=thresholds, rules=rules, version=version,
                  source=source, warnings=tuple(rep.warnings))


def _decode(data: bytes, source: str) -> tuple[Any, str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PolicyError(source, [f"{source}: not UTF-8 text (byte {exc.start}); rules.json must be "
                                   "UTF-8 JSON"]) from None
    if not text.strip():
        raise PolicyError(source, [f"{source}: file is empty; expected a JSON object with analysis, "
                                   "thresholds and rules"])
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise PolicyError(source, [f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}"]) from None


def _type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------- analysis

def _analysis(raw: Any, rep: _Report) -> Analysis | None:
    if raw is None:
        rep.error(None, "analysis is missing; it must at least set lineage_max_depth (> 0)")
        return None
    if not isinstance(raw, dict):
        rep.error(rep.loc.key_line("analysis"), f"analysis must be an object, not {_type(raw)}")
        return None
    known = (set(REQUIRED_INTS) | set(INT_DEFAULTS) | set(LIST_DEFAULTS) | set(NO_DEFAULT_LISTS)
             | set(PORT_LIST_FIELDS) | set(CHOICE_DEFAULTS) | set(MAP_DEFAULTS))
    for key in sorted(set(raw) - known):
        rep.warn(rep.loc.key_line("analysis", key), f"unknown analysis field '{key}' is ignored")
    values: dict[str, Any] = {}
    for name in REQUIRED_INTS + tuple(INT_DEFAULTS):
        values[name] = _int_field(raw, name, rep)
    for name in tuple(LIST_DEFAULTS) + NO_DEFAULT_LISTS:
        values[name] = _str_list_field(raw, name, rep)
    values["allowed_loopback_ports"] = _port_list_field(raw, "allowed_loopback_ports", rep)
    for name in CHOICE_DEFAULTS:
        values[name] = _choice_field(raw, name, rep)
    for name in MAP_DEFAULTS:
        values[name] = _map_field(raw, name, rep)
    depth = raw.get("lineage_max_depth")
    if depth is None:
        rep.error(rep.loc.key_line("analysis"), "analysis.lineage_max_depth is required and must be > 0")
    elif _is_int(depth) and depth <= 0:
        rep.error(rep.loc.key_line("analysis", "lineage_max_depth"),
                  f"analysis.lineage_max_depth must be > 0, got {depth}")
    values["ignored_connect_ips"] = _parsable_ips(values["ignored_connect_ips"], rep)
    _check_cidrs(values["known_cidrs"], rep)
    if rep.errors:
        return None
    return Analysis(**{k: apply_default(k, v) for k, v in values.items()})


def _int_field(raw: dict[str, Any], name: str, rep: _Report) -> int:
    value = raw.get(name, 0)
    if not _is_int(value):
        rep.error(rep.loc.key_line("analysis", name),
                  f"analysis.{name} must be an integer, not {_type(value)}")
        return 0
    if value < 0:
        rep.error(rep.loc.key_line("analysis", name),
                  f"analysis.{name} must be >= 0 (0 means the built-in default), got {value}")
    return value


def _str_list_field(raw: dict[str, Any], name: str, rep: _Report) -> tuple[str, ...]:
    value = raw.get(name, [])
    line = rep.loc.key_line("analysis", name)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        rep.error(line, f"analysis.{name} must be a list of strings")
        return ()
    # Names and patterns are compared after trimming (§8); blank entries would match everything.
    trimmed = tuple(v.strip() for v in value)
    if any(not v for v in trimmed):
        rep.warn(line, f"analysis.{name}: blank entries are ignored")
    return tuple(v for v in trimmed if v)


def _port_list_field(raw: dict[str, Any], name: str, rep: _Report) -> tuple[int, ...]:
    value = raw.get(name, [])
    if not isinstance(value, list) or not all(_is_int(v) and 0 <= v <= 65535 for v in value):
        rep.error(rep.loc.key_line("analysis", name),
                  f"analysis.{name} must be a list of port numbers 0..65535")
        return ()
    return tuple(value)


def _choice_field(raw: dict[str, Any], name: str, rep: _Report) -> str:
    value = raw.get(name, "")
    allowed = CHOICE_DEFAULTS[name][1]
    if not isinstance(value, str) or (value and value not in allowed):
        rep.error(rep.loc.key_line("analysis", name),
                  f"analysis.{name} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
        return ""
    return value


def _map_field(raw: dict[str, Any], name: str, rep: _Report) -> dict[str, tuple[str, ...]]:
    value = raw.get(name, {})
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and k.strip() and isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v)
        for k, v in value.items())
    if not ok:
        rep.error(rep.loc.key_line("analysis", name),
                  f"analysis.{name} must be an object mapping a path pattern to a list of executable names")
        return {}
    return {k.strip(): tuple(x.strip() for x in v) for k, v in value.items()}


def _parsable_ips(values: tuple[str, ...], rep: _Report) -> tuple[str, ...]:
    kept = []
    for v in values:
        try:
            kept.append(str(ipaddress.ip_address(v)))
        except ValueError:
            rep.warn(rep.loc.key_line("analysis", "ignored_connect_ips"),
                     f"analysis.ignored_connect_ips: '{v}' is not an IP address; skipped")
    return tuple(kept)


def _check_cidrs(values: tuple[str, ...], rep: _Report) -> None:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            rep.warn(rep.loc.key_line("analysis", "known_cidrs"),
                     f"analysis.known_cidrs: '{v}' is not a CIDR prefix")


# ---------------------------------------------------------------- thresholds

def _thresholds(raw: Any, rep: _Report) -> Thresholds | None:
    if raw is None:
        rep.warn(None, "thresholds missing: log=0 and alert=0, so every newly triggered rule alerts")
        return Thresholds(0, 0)
    if not isinstance(raw, dict):
        rep.error(rep.loc.key_line("thresholds"), f"thresholds must be an object, not {_type(raw)}")
        return None
    log_v, alert_v = raw.get("log", 0), raw.get("alert", 0)
    ok = True
    for name, value in (("log", log_v), ("alert", alert_v)):
        line = rep.loc.key_line("thresholds", name) or rep.loc.key_line("thresholds")
        if not _is_int(value):
            rep.error(line, f"thresholds.{name} must be an integer, not {_type(value)}")
            ok = False
        elif value < 0:
            rep.error(line, f"thresholds.{name} must be >= 0, got {value}")
            ok = False
    if ok and alert_v < log_v:
        rep.error(rep.loc.key_line("thresholds", "alert") or rep.loc.key_line("thresholds"),
                  f"thresholds.alert ({alert_v}) must be >= thresholds.log ({log_v})")
        ok = False
    for key in sorted(set(raw) - {"log", "alert"}):
        rep.warn(rep.loc.key_line("thresholds", key), f"unknown thresholds field '{key}' is ignored")
    return Thresholds(log_v, alert_v) if ok else None


# ---------------------------------------------------------------- rules

def _rules(raw: Any, rep: _Report) -> tuple[Rule, ...]:
    if raw is None:
        rep.warn(None, "no rules: nothing will ever be scored")
        return ()
    if not isinstance(raw, list):
        rep.error(rep.loc.key_line("rules"), f"rules must be an array, not {_type(raw)}")
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


def _rule(i: int, item: Any, rep: _Report) -> Rule | None:
    line = rep.loc.rule_line(i)
    if not isinstance(item, dict):
        rep.error(line, f"rule #{i + 1} must be an object, not {_type(item)}")
        return None
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        rep.error(rep.loc.rule_line(i, "name"), f"rule #{i + 1}: name is required (a non-empty string)")
        return None
    label = f"rule '{name}'"
    n_errors = len(rep.errors)
    for key in sorted(set(item) - RULE_KEYS):
        rep.warn(rep.loc.rule_line(i, key), f"{label}: unknown field '{key}' is ignored")
    description = _typed(item, "description", str, "", i, label, rep)
    tags = _tags(item, i, label, rep)
    weight = _typed(item, "weight", int, 0, i, label, rep)
    enabled = _typed(item, "enabled", bool, False, i, label, rep)
    if "enabled" not in item:
        rep.warn(line, f"{label}: no 'enabled' field, so the rule is disabled (add \"enabled\": true)")
    expr = _effective_expr(item, i, label, rep)
    if enabled and expr is not None:
        check = check_expr(expr)
        for msg in check.errors:
            rep.error(rep.loc.rule_line(i, "expr" if item.get("expr") else "feature"),
                      f"{label} expr {msg}")
        for msg in check.warnings:
            rep.warn(rep.loc.rule_line(i, "expr"), f"{label} expr {msg}")
    if len(rep.errors) > n_errors or expr is None:
        return None
    return Rule(name=name, expr=expr, weight=weight, enabled=enabled, description=description,
                line=line, tags=tags)


def _tags(item: dict[str, Any], i: int, label: str, rep: _Report) -> tuple[str, ...]:
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
           rep: _Report) -> Any:
    value = item.get(key, default)
    ok = _is_int(value) if kind is int else isinstance(value, kind)
    if not ok:
        names = {int: "an integer", bool: "true or false", str: "a string"}
        rep.error(rep.loc.rule_line(i, key), f"{label}: {key} must be {names[kind]}, not {_type(value)}")
        return default
    return value


def _effective_expr(item: dict[str, Any], i: int, label: str, rep: _Report) -> str | None:
    """``expr``, or the legacy feature/match/min_value form of §9.1."""
    expr = item.get("expr", "")
    if not isinstance(expr, str):
        rep.error(rep.loc.rule_line(i, "expr"), f"{label}: expr must be a string, not {_type(expr)}")
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


def describe(policy: Policy) -> str:
    """One-line summary used by ``casa rules check`` and reload logs."""
    enabled = len(policy.enabled_rules)
    return (f"{policy.source}: OK | version={policy.version} rules={len(policy.rules)} "
            f"enabled={enabled} log={policy.thresholds.log} alert={policy.thresholds.alert}")

