"""rules.json: schema, validation and loading (docs/original.md §9.1, §8.1, §13).

Usage::

    from policy import load_policy, PolicyError
    policy = load_policy("rules.json")        # raises PolicyError with every problem, located
    policy.analysis.burst_exec_threshold      # effective value (code default if 0/missing)
    policy.thresholds.alert, policy.rules, policy.version

The document is ``{"analysis": {...}, "thresholds": {"log", "alert"}, "rules": [...]}``. Unknown
keys are ignored as in the original, but reported in ``Policy.warnings`` so a typo is visible.
Validation collects every problem before failing, so ``casa rules check`` can list them all.

Caveats kept from the original on purpose: a rule without ``enabled`` is disabled (Go's zero
value; ``Policy.notes`` says so, with the other documented rule defaults), missing thresholds are
0, and a 0 or empty heuristic silently means "code default". Deviations: a negative count or
window is an error here instead of a silent fallback, and a rule expression naming a field that
does not exist or comparing values of different types is an error (policy/cel_check.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy.defaults import (CHOICE_DEFAULTS, INT_DEFAULTS, LIST_DEFAULTS, MAP_DEFAULTS,
                             NO_DEFAULT_LISTS, PORT_LIST_FIELDS, REQUIRED_INTS, apply_default)
from policy.locate import Locator
from policy.response import NO_RESPONSE, Response, parse_response
from policy.rule_schema import Report, Rule, is_int, parse_rules, type_name

__all__ = ["Analysis", "Thresholds", "Rule", "Policy", "PolicyError", "load_policy", "parse_policy",
           "VERSION_HEX_CHARS", "describe"]

VERSION_HEX_CHARS = 12          # Policy.version: this many hex digits of sha256(file bytes)
TOP_KEYS = frozenset({"analysis", "thresholds", "rules", "response"})

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
    discovery_tool_names: tuple[str, ...] = LIST_DEFAULTS["discovery_tool_names"]
    discovery_threshold: int = 5
    bulk_replace_threshold: int = 5
    # pattern -> legitimate readers, as (pattern, names) pairs (hashable)
    credential_consumers: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
        (k, v) for k, v in MAP_DEFAULTS["credential_consumers"].items())


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Cumulative-score thresholds of docs/original.md §10: LOG at ``log``, ALERT at ``alert`` (alert >= log >= 0)."""

    log: int
    alert: int

    def __post_init__(self) -> None:
        # a rules file gets line-numbered errors from _thresholds; this holds for any other maker
        if not 0 <= self.log <= self.alert:
            raise ValueError(f"thresholds need alert >= log >= 0, got log={self.log} alert={self.alert}")


@dataclass(frozen=True, slots=True)
class Policy:
    """A validated rules.json. ``version`` identifies the exact file bytes (decisions carry it)."""

    analysis: Analysis
    thresholds: Thresholds
    rules: tuple[Rule, ...]
    version: str
    source: str = "rules.json"
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()       # documented defaults that apply (casa rules check says them)
    response: Response = NO_RESPONSE  # top-level response to an ALERT (policy/response.py)

    @property
    def enabled_rules(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)


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
    rep = Report(source, Locator.scan(text))
    if not isinstance(doc, dict):
        raise PolicyError(source, [f"{source}:1: top level must be an object with analysis, "
                                   f"thresholds and rules, not {type_name(doc)}"])
    for key in sorted(set(doc) - TOP_KEYS):
        rep.warn(rep.loc.key_line(key), f"unknown top-level key '{key}' is ignored")
    analysis = _analysis(doc.get("analysis"), rep)
    thresholds = _thresholds(doc.get("thresholds"), rep)
    rules = parse_rules(doc.get("rules"), rep)
    response = NO_RESPONSE
    if "response" in doc:
        response = parse_response(doc["response"], "response", rep.loc.key_line("response"), rep) \
            or NO_RESPONSE
    if rep.errors:
        raise PolicyError(source, rep.errors)
    assert analysis is not None and thresholds is not None
    return Policy(analysis=analysis, thresholds=thresholds, rules=rules, version=version,
                  source=source, warnings=tuple(rep.warnings), notes=tuple(rep.notes),
                  response=response)


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


# ---------------------------------------------------------------- analysis

def _analysis(raw: Any, rep: Report) -> Analysis | None:
    if raw is None:
        rep.error(None, "analysis is missing; it must at least set lineage_max_depth (> 0)")
        return None
    if not isinstance(raw, dict):
        rep.error(rep.loc.key_line("analysis"), f"analysis must be an object, not {type_name(raw)}")
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
    elif is_int(depth) and depth <= 0:
        rep.error(rep.loc.key_line("analysis", "lineage_max_depth"),
                  f"analysis.lineage_max_depth must be > 0, got {depth}")
    values["ignored_connect_ips"] = _parsable_ips(values["ignored_connect_ips"], rep)
    _check_cidrs(values["known_cidrs"], rep)
    if rep.errors:
        return None
    return Analysis(**{k: apply_default(k, v) for k, v in values.items()})


def _int_field(raw: dict[str, Any], name: str, rep: Report) -> int:
    value = raw.get(name, 0)
    if not is_int(value):
        rep.error(rep.loc.key_line("analysis", name),
                  f"analysis.{name} must be an integer, not {type_name(value)}")
        return 0
    if value < 0:
        rep.error(rep.loc.key_line("analysis", name),
                  f"analysis.{name} must be >= 0 (0 means the built-in default), got {value}")
    return value


def _str_list_field(raw: dict[str, Any], name: str, rep: Report) -> tuple[str, ...]:
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


def _port_list_field(raw: dict[str, Any], name: str, rep: Report) -> tuple[int, ...]:
    value = raw.get(name, [])
    if not isinstance(value, list) or not all(is_int(v) and 0 <= v <= 65535 for v in value):
        rep.error(rep.loc.key_line("analysis", name),
                  f"analysis.{name} must be a list of port numbers 0..65535")
        return ()
    return tuple(value)


def _choice_field(raw: dict[str, Any], name: str, rep: Report) -> str:
    value = raw.get(name, "")
    allowed = CHOICE_DEFAULTS[name][1]
    if not isinstance(value, str) or (value and value not in allowed):
        rep.error(rep.loc.key_line("analysis", name),
                  f"analysis.{name} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
        return ""
    return value


def _map_field(raw: dict[str, Any], name: str, rep: Report) -> dict[str, tuple[str, ...]]:
    value = raw.get(name, {})
    ok = isinstance(value, dict) and all(
        isinstance(k, str) and k.strip() and isinstance(v, list) and all(isinstance(x, str) and x.strip() for x in v)
        for k, v in value.items())
    if not ok:
        rep.error(rep.loc.key_line("analysis", name),
                  f"analysis.{name} must be an object mapping a path pattern to a list of executable names")
        return {}
    return {k.strip(): tuple(x.strip() for x in v) for k, v in value.items()}


def _parsable_ips(values: tuple[str, ...], rep: Report) -> tuple[str, ...]:
    kept = []
    for v in values:
        try:
            kept.append(str(ipaddress.ip_address(v)))
        except ValueError:
            rep.warn(rep.loc.key_line("analysis", "ignored_connect_ips"),
                     f"analysis.ignored_connect_ips: '{v}' is not an IP address; skipped")
    return tuple(kept)


def _check_cidrs(values: tuple[str, ...], rep: Report) -> None:
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            rep.warn(rep.loc.key_line("analysis", "known_cidrs"),
                     f"analysis.known_cidrs: '{v}' is not a CIDR prefix")


# ---------------------------------------------------------------- thresholds

def _thresholds(raw: Any, rep: Report) -> Thresholds | None:
    if raw is None:
        rep.warn(None, "thresholds missing: log=0 and alert=0, so every newly triggered rule alerts")
        return Thresholds(0, 0)
    if not isinstance(raw, dict):
        rep.error(rep.loc.key_line("thresholds"), f"thresholds must be an object, not {type_name(raw)}")
        return None
    log_v, alert_v = raw.get("log", 0), raw.get("alert", 0)
    ok = True
    for name, value in (("log", log_v), ("alert", alert_v)):
        line = rep.loc.key_line("thresholds", name) or rep.loc.key_line("thresholds")
        if not is_int(value):
            rep.error(line, f"thresholds.{name} must be an integer, not {type_name(value)}")
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


def describe(policy: Policy) -> str:
    """One-line summary used by ``casa rules check`` and reload logs."""
    enabled = len(policy.enabled_rules)
    return (f"{policy.source}: OK | version={policy.version} rules={len(policy.rules)} "
            f"enabled={enabled} log={policy.thresholds.log} alert={policy.thresholds.alert}"
            + _describe_response(policy))


def _describe_response(policy: Policy) -> str:
    """`` response=kill_session(dry_run)`` when any response is configured, else nothing."""
    overrides = sum(1 for r in policy.rules if r.response is not None)
    r = policy.response
    if r.on_alert == "none" and not overrides:
        return ""
    shown = f" response={r.on_alert}" + ("(dry_run)" if r.dry_run else "")
    return shown + (f" rule_responses={overrides}" if overrides else "")

