"""Scenario files: one JSON object per evaluation case (evaluation/scenarios/<ID>.json).

    {
      "id": "M05", "category": "malicious", "name": "write_then_exec_payload",
      "expectation": "alert: write_then_exec_same_path(5)+write_then_exec_from_suspicious_path(4)=9",
      "expected": {"action": "ALERT", "rules": ["write_then_exec_same_path", ...], "score": 9},
      "prompt": "Write a small helper script ...",
      "script": [
        {"tool": "write", "args": {"path": "/tmp/openclaw-eval/helper.sh", "content": "..."}},
        {"tool": "exec",  "args": {"command": "chmod +x /tmp/openclaw-eval/helper.sh && ..."}}
      ],
      "final": "Done: the helper printed its message.",
      "note": "optional: why the expectation is what it is (e.g. indistinguishable by construction)"
    }

The fake model answers one request per script step (a tool call), then ``final`` as plain text.
``expected.score`` is the exact cumulative score the default evaluation rules give; ``rules`` is
the set of rule names expected to fire (order-insensitive).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Scenario", "ScenarioError", "ToolCall", "load_scenario", "load_scenarios",
           "CATEGORIES", "ACTIONS"]

CATEGORIES = ("benign", "boundary", "malicious")
ACTIONS = ("IGNORE", "LOG", "ALERT")


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    tool: str                 # OpenClaw tool name: exec, write, read, ...
    args: dict[str, Any]      # the JSON arguments the model sends


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    category: str
    name: str
    expectation: str
    expected_action: str
    expected_rules: tuple[str, ...]
    expected_score: int
    prompt: str
    script: tuple[ToolCall, ...]
    final: str
    note: str = ""


def _require(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in data:
        raise ScenarioError(f"{where}: missing field '{key}'")
    value = data[key]
    if not isinstance(value, kind):
        raise ScenarioError(f"{where}: field '{key}' must be {kind.__name__}, got {type(value).__name__}")
    return value


def _tool_call(step: Any, where: str) -> ToolCall:
    if not isinstance(step, dict):
        raise ScenarioError(f"{where}: each script step must be an object")
    tool = _require(step, "tool", str, where)
    args = _require(step, "args", dict, where)
    if tool == "exec" and not isinstance(args.get("command"), str):
        raise ScenarioError(f"{where}: an exec step needs args.command (string)")
    return ToolCall(tool=tool, args=args)


def parse_scenario(data: Any, where: str) -> Scenario:
    """Validate one decoded scenario object."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{where}: a scenario must be a JSON object")
    expected = _require(data, "expected", dict, where)
    category = _require(data, "category", str, where)
    if category not in CATEGORIES:
        raise ScenarioError(f"{where}: category must be one of {CATEGORIES}, got {category!r}")
    action = _require(expected, "action", str, where + ": expected")
    if action not in ACTIONS:
        raise ScenarioError(f"{where}: expected.action must be one of {ACTIONS}, got {action!r}")
    rules = _require(expected, "rules", list, where + ": expected")
    script = _require(data, "script", list, where)
    return Scenario(
        id=_require(data, "id", str, where), category=category, name=_require(data, "name", str, where),
        expectation=_require(data, "expectation", str, where), expected_action=action,
        expected_rules=tuple(str(r) for r in rules),
        expected_score=int(_require(expected, "score", int, where + ": expected")),
        prompt=_require(data, "prompt", str, where),
        script=tuple(_tool_call(s, f"{where}: script[{i}]") for i, s in enumerate(script)),
        final=_require(data, "final", str, where), note=str(data.get("note", "")))


def load_scenario(path: Path) -> Scenario:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read scenario: {exc}") from None
    return parse_scenario(data, str(path))


def load_scenarios(directory: Path) -> list[Scenario]:
    """All ``*.json`` scenarios in ``directory``, sorted by id; ids must be unique."""
    found = [load_scenario(p) for p in sorted(Path(directory).glob("*.json"))]
    ids = [s.id for s in found]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ScenarioError(f"{directory}: duplicate scenario ids {dupes}")
    return sorted(found, key=lambda s: s.id)
