"""The attack suite's scenario table: one TOML file per tactic under evaluation/attacks/scenarios/.

    from evaluation.attacks.scenario import load_scenarios
    table = load_scenarios()                     # every scenario, validated, in file order

A file holds ``[[scenario]]`` entries; top-level ``category``, ``tactic`` and ``expected`` keys are defaults
for the entries of that file. Fields of one scenario:

    id          unique, lower-case kebab (atk-... malicious, dev-... benign, probe-... sandbox tests)
    name        one line: what the scenario does
    category    malicious | benign | probe (probes test the sandbox itself; never scored)
    tactic      ATT&CK tactic (or "development" for benign tasks), for the per-category table
    techniques  ATT&CK technique ids (T1059.004, ...); required for malicious scenarios
    expected    ALERT | LOG | IGNORE. Malicious: ALERT for multi-step attacks; LOG only where one
                step alone is the whole attack, and then ``why`` says so. Benign: IGNORE.
    why         the reason for a malicious LOG expectation (required then)
    script      shell text the launcher runs with ``-c`` (cwd: ~/project)
    servers     loopback servers the sandbox starts for it (evaluation/attacks/servers.py)
    needs_root  true when the attack cannot happen without root; ``root_reason`` then says why
                and the unprivileged run records the skip with that reason
    profile     agent (the generic invocation launcher, default) | runtime (the runtime launcher)
    timeout_s   the launcher's process group is killed after this long (default 30)
    linger_s    how long detached processes may outlive the launcher (default 2)
    effects     what must have happened for the run to count as a real attempt (``kind:arg``):
                ``http:TEXT`` ``tcp:TEXT`` ``shell:TEXT`` a server saw TEXT; ``dns:N`` at least N
                distinct query names; ``file:PATH`` exists in the sandbox afterwards
    commands    for ``listener``/``bind_client``: what the operator types into the shell
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Scenario", "ScenarioError", "load_scenarios", "SCENARIO_DIR", "SERVERS", "CATEGORIES",
           "DEFAULT_COMMANDS"]

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
CATEGORIES = ("malicious", "benign", "probe")
ACTIONS = ("IGNORE", "LOG", "ALERT")
PROFILES = ("agent", "runtime")
SERVERS = ("http", "listener", "bind_client", "tcp_sink", "dns")
EFFECT_KINDS = ("http", "tcp", "shell", "dns", "file")
DEFAULT_COMMANDS = ("id", "uname -a", "cat ~/.ssh/id_rsa", "exit")
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_LINGER_S = 2.0
_ID = re.compile(r"^(atk|dev|probe)-[a-z0-9]+(-[a-z0-9]+)*$")
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
_FIELDS = {"id", "name", "category", "tactic", "techniques", "expected", "why", "script", "servers",
           "needs_root", "root_reason", "profile", "timeout_s", "linger_s", "effects", "commands"}


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file and the scenario."""


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    name: str
    category: str
    tactic: str
    expected: str
    script: str
    techniques: tuple[str, ...] = ()
    why: str = ""
    servers: tuple[str, ...] = ()
    needs_root: bool = False
    root_reason: str = ""
    profile: str = "agent"
    timeout_s: float = DEFAULT_TIMEOUT_S
    linger_s: float = DEFAULT_LINGER_S
    effects: tuple[str, ...] = ()
    commands: tuple[str, ...] = DEFAULT_COMMANDS
    source: str = field(default="", compare=False)

    def runs_as(self, identity_is_root: bool) -> bool:
        """Whether this scenario runs for an identity (root-only attacks skip the unprivileged run)."""
        return identity_is_root or not self.needs_root

    def as_spec(self) -> dict[str, Any]:
        """The part the in-namespace keeper needs (JSON-able)."""
        return {"id": self.id, "script": self.script, "servers": list(self.servers),
                "profile": self.profile, "timeout_s": self.timeout_s, "linger_s": self.linger_s,
                "effects": list(self.effects), "commands": list(self.commands)}


def _problems(s: Scenario) -> list[str]:
    out = []
    if not _ID.match(s.id):
        out.append("id must be atk-/dev-/probe- followed by lower-case kebab words")
    if s.category not in CATEGORIES:
        out.append(f"category must be one of {CATEGORIES}")
    if s.expected not in ACTIONS:
        out.append(f"expected must be one of {ACTIONS}")
    if s.category == "malicious":
        if s.expected == "IGNORE":
            out.append("a malicious scenario expects LOG or ALERT")
        if s.expected == "LOG" and not s.why.strip():
            out.append("a malicious LOG expectation needs `why` (one step alone is the whole attack)")
        if not s.techniques:
            out.append("a malicious scenario names its ATT&CK techniques")
    if s.category == "benign" and s.expected != "IGNORE":
        out.append("a benign scenario expects IGNORE")
    out += [f"technique {t!r} is not an ATT&CK id" for t in s.techniques if not _TECHNIQUE.match(t)]
    out += [f"unknown server {x!r} (known: {SERVERS})" for x in s.servers if x not in SERVERS]
    out += [f"effect {e!r} is not kind:arg with kind in {EFFECT_KINDS}" for e in s.effects
            if e.split(":", 1)[0] not in EFFECT_KINDS or ":" not in e]
    if s.profile not in PROFILES:
        out.append(f"profile must be one of {PROFILES}")
    if s.needs_root and not s.root_reason.strip():
        out.append("needs_root needs root_reason")
    if not s.script.strip():
        out.append("script is empty")
    if not 0 < s.timeout_s <= 120 or not 0 <= s.linger_s <= 60:
        out.append("timeout_s must be in (0, 120] and linger_s in [0, 60]")
    return out


def _scenario(raw: dict[str, Any], defaults: dict[str, Any], where: str) -> Scenario:
    unknown = set(raw) - _FIELDS
    if unknown:
        raise ScenarioError(f"{where}: unknown field(s) {sorted(unknown)}")
    merged = {**defaults, **raw}
    for key in ("techniques", "servers", "effects", "commands"):
        if key in merged:
            merged[key] = tuple(merged[key])
    try:
        s = Scenario(**merged, source=where)
    except TypeError as exc:
        raise ScenarioError(f"{where}: {exc}") from None
    problems = _problems(s)
    if problems:
        raise ScenarioError(f"{where}: " + "; ".join(problems))
    return s


def load_file(path: Path) -> list[Scenario]:
    """The scenarios of one TOML file, validated."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    defaults = {k: data[k] for k in ("category", "tactic", "expected") if k in data}
    entries = data.get("scenario", [])
    if not isinstance(entries, list) or not entries:
        raise ScenarioError(f"{path}: no [[scenario]] entries")
    return [_scenario(e, defaults, f"{path.name}[{e.get('id', i)}]") for i, e in enumerate(entries)]


def load_scenarios(directory: Path = SCENARIO_DIR, include_probes: bool = False) -> list[Scenario]:
    """Every scenario under ``directory`` (sorted by file name), ids unique; probes only on request."""
    out: list[Scenario] = []
    for path in sorted(directory.glob("*.toml")):
        out.extend(load_file(path))
    seen: set[str] = set()
    for s in out:
        if s.id in seen:
            raise ScenarioError(f"{s.source}: duplicate id {s.id}")
        seen.add(s.id)
    return [s for s in out if include_probes or s.category != "probe"]
