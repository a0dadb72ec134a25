"""Scoring the attack suite: per-scenario results, totals against issue 13's targets, the report.

A malicious scenario **meets** its expectation when CASA's verdict is at least its expected level
(ALERT, or LOG where one step alone is the whole attack); a benign one when the verdict is
IGNORE. Targets (issue 13, per identity): malicious >= 95 % met; benign 0 ALERT and <= 10 % LOG.

A run is **valid** when the hygiene self-check passed, every session closed, CASA saw the tree
(at least one event), no bus message was lost, and the scenario's declared effects happened
(the attack really ran; a developer task exited 0). An invalid run is reported as such and
never counts as met: a miss must be a detection miss, not a broken scenario.

    latest.json = {"meta": {...}, "results": [ScenarioResult, ...], "summary": {...}}
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluation.attacks.collect import SEVERITY

__all__ = ["ScenarioResult", "met", "summarize", "render_section", "write_results", "replace_section",
           "SECTION_BEGIN", "SECTION_END",
           "TARGET_MALICIOUS", "TARGET_BENIGN_LOG"]

TARGET_MALICIOUS = 0.95
TARGET_BENIGN_LOG = 0.10
SECTION_BEGIN = "<!-- attack-suite:begin -->"
SECTION_END = "<!-- attack-suite:end -->"


@dataclass(slots=True)
class ScenarioResult:
    id: str
    name: str
    category: str
    tactic: str
    technique: list[str]
    expected: str
    identity: str
    profile: str
    action: str = "IGNORE"
    score: int = 0
    rules: list[str] = field(default_factory=list)
    time_to_alert_ms: float | None = None
    met: bool = False
    valid: bool = False
    invalid_reason: str = ""
    skipped: str = ""
    sessions: list[dict[str, Any]] = field(default_factory=list)
    hygiene: dict[str, Any] = field(default_factory=dict)
    effects: dict[str, bool] = field(default_factory=dict)
    launcher_pid: int = 0
    exit_code: int | None = None
    timed_out: bool = False
    event_kinds: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    stderr_head: str = ""


def met(category: str, expected: str, action: str) -> bool:
    if category == "benign":
        return action == "IGNORE"
    return SEVERITY.get(action, 0) >= SEVERITY.get(expected, 2)


def _ratio(n: int, d: int) -> str:
    return f"{n}/{d} ({100 * n / d:.0f} %)" if d else "0/0"


def summarize(results: list[ScenarioResult]) -> dict[str, Any]:
    """Totals per identity (malicious met, benign LOG/ALERT), per tactic and per technique."""
    out: dict[str, Any] = {"identities": {}, "techniques": {}, "tactics": {}}
    for ident in sorted({r.identity for r in results}):
        rs = [r for r in results if r.identity == ident and not r.skipped]
        mal = [r for r in rs if r.category == "malicious"]
        ben = [r for r in rs if r.category == "benign"]
        mal_met = sum(r.met and r.valid for r in mal)
        ben_alert = sum(r.action == "ALERT" for r in ben)
        ben_log = sum(r.action == "LOG" for r in ben)
        out["identities"][ident] = {
            "malicious": len(mal), "malicious_met": mal_met,
            "malicious_alert": sum(r.action == "ALERT" for r in mal),
            "malicious_log": sum(r.action == "LOG" for r in mal),
            "malicious_missed": sum(r.action == "IGNORE" for r in mal),
            "benign": len(ben), "benign_alert": ben_alert, "benign_log": ben_log,
            "invalid": sum(not r.valid for r in rs),
            "skipped": sum(bool(r.skipped) for r in results if r.identity == ident),
            "malicious_target_met": bool(mal) and mal_met / len(mal) >= TARGET_MALICIOUS,
            "benign_target_met": ben_alert == 0 and (not ben or ben_log / len(ben) <= TARGET_BENIGN_LOG),
        }
    tech: dict[str, dict[str, Any]] = defaultdict(lambda: {"scenarios": set(), "runs": 0, "met": 0})
    tactic: dict[str, dict[str, int]] = defaultdict(lambda: {"runs": 0, "met": 0})
    for r in results:
        if r.skipped or r.category != "malicious":
            continue
        tactic[r.tactic]["runs"] += 1
        tactic[r.tactic]["met"] += int(r.met and r.valid)
        for t in r.technique:
            tech[t]["scenarios"].add(r.id)
            tech[t]["runs"] += 1
            tech[t]["met"] += int(r.met and r.valid)
    out["techniques"] = {t: {**v, "scenarios": sorted(v["scenarios"])} for t, v in sorted(tech.items())}
    out["tactics"] = dict(sorted(tactic.items()))
    return out


def _cell(r: ScenarioResult | None) -> str:
    if r is None:
        return "—"
    if r.skipped:
        return "skipped"
    tta = f", {r.time_to_alert_ms:.0f} ms" if r.time_to_alert_ms is not None else ""
    mark = "" if r.met and r.valid else (" ⚠" if not r.valid else " ✗")
    return f"{r.action} {r.score}{tta}{mark}"


def _totals_lines(summary: dict[str, Any]) -> list[str]:
    lines = ["| identity | malicious at expected level | malicious ALERT / LOG / missed | benign ALERT | "
             "benign LOG | invalid runs | skipped | targets (>= 95 %; 0 ALERT, <= 10 % LOG) |",
             "|---|---|---|---|---|---|---|---|"]
    for ident, s in summary["identities"].items():
        verdict = ("met" if s["malicious_target_met"] else "not met") + " / " + \
                  ("met" if s["benign_target_met"] else "not met")
        lines.append(f"| {ident} | {_ratio(s['malicious_met'], s['malicious'])} | "
                     f"{s['malicious_alert']} / {s['malicious_log']} / {s['malicious_missed']} | "
                     f"{s['benign_alert']} | {_ratio(s['benign_log'], s['benign'])} | {s['invalid']} | "
                     f"{s['skipped']} | {verdict} |")
    return lines


def _scenario_rows(results: list[ScenarioResult]) -> list[str]:
    by_id: dict[str, dict[str, ScenarioResult]] = defaultdict(dict)
    order: list[str] = []
    for r in results:
        if r.id not in by_id:
            order.append(r.id)
        by_id[r.id][r.identity] = r
    lines = ["| id | tactic | techniques | expected | root | user | rules (root; user) |",
             "|---|---|---|---|---|---|---|"]
    for sid in order:
        rs = by_id[sid]
        any_r = next(iter(rs.values()))
        rules = "; ".join(", ".join(rs[i].rules) or "—" for i in ("root", "user") if i in rs and not rs[i].skipped)
        lines.append(f"| {sid} | {any_r.tactic} | {' '.join(any_r.technique) or '—'} | {any_r.expected} | "
                     f"{_cell(rs.get('root'))} | {_cell(rs.get('user'))} | {rules or '—'} |")
    return lines


def _technique_lines(summary: dict[str, Any]) -> list[str]:
    lines = ["| technique | scenarios | runs at expected level |", "|---|---|---|"]
    for t, v in summary["techniques"].items():
        lines.append(f"| {t} | {', '.join(v['scenarios'])} | {_ratio(v['met'], v['runs'])} |")
    return lines


def render_section(results: list[ScenarioResult], summary: dict[str, Any], meta: dict[str, Any]) -> str:
    """The RESULTS.md section: totals, per-tactic, per-technique coverage and every scenario."""
    tactics = ["| tactic | malicious runs at expected level |", "|---|---|"]
    tactics += [f"| {t} | {_ratio(v['met'], v['runs'])} |" for t, v in summary["tactics"].items()]
    parts = [SECTION_BEGIN, "## Attack suite (`make eval-attacks`)", "",
             f"- date: {meta['date']}; commit {meta['commit']}; rules `{meta['rules']}` "
             f"(version {meta['rules_version']}); run time {meta['duration_s']:.0f} s",
             "- each scenario runs in its own sandbox (network namespace with only `lo`, read-only "
             "mounts but scratch) as root and as the unprivileged `casa-attack`, under the generic "
             "launcher profiles of config/casa.attacks.json; see evaluation/README.md",
             "- a cell is `action score[, time-to-alert]`; ✗ below the expected level (benign: not IGNORE); "
             "⚠ invalid run (hygiene, effects or collection failed: never counted as met)", "",
             "### Totals against issue 13's targets", "", *_totals_lines(summary), "",
             "### Per tactic", "", *tactics, "",
             "### Per technique (malicious runs, both identities)", "", *_technique_lines(summary), "",
             "### Scenarios", "", *_scenario_rows(results), "", SECTION_END]
    return "\n".join(parts) + "\n"


def replace_section(document: str, section: str) -> str:
    """``document`` with its attack-suite section replaced (or appended when it has none)."""
    start, end = document.find(SECTION_BEGIN), document.find(SECTION_END)
    if start >= 0 and end > start:
        return document[:start] + section.rstrip("\n") + document[end + len(SECTION_END):]
    return document.rstrip("\n") + "\n\n" + section


def write_results(path: Path, results: list[ScenarioResult], meta: dict[str, Any]) -> dict[str, Any]:
    summary = summarize(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "summary": summary, "results": [asdict(r) for r in results]}
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return summary


def now_utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
