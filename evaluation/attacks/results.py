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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluation.attacks.collect import SEVERITY

__all__ = ["ScenarioResult", "met", "summarize", "render_section", "write_results", "replace_section",
           "replace_openclaw_block", "render_openclaw_block", "totals_lines", "scenario_rows", "SECTION_BEGIN", "SECTION_END",
           "OPENCLAW_BEGIN", "OPENCLAW_END", "GROUPS",
           "TARGET_MALICIOUS", "TARGET_BENIGN_LOG"]

TARGET_MALICIOUS = 0.95
TARGET_BENIGN_LOG = 0.10
SECTION_BEGIN = "<!-- attack-suite:begin -->"
SECTION_END = "<!-- attack-suite:end -->"
OPENCLAW_BEGIN = "<!-- attack-suite-openclaw:begin -->"
OPENCLAW_END = "<!-- attack-suite-openclaw:end -->"


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
    mode: str = ""                 # OpenClaw runs (openclaw.py): gateway | local; "" for the launcher suite
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


GROUPS = {"identity": "identities", "mode": "modes"}
"""What totals are grouped by: the launcher suite's identities, or OpenClaw's modes (openclaw.py)."""


def summarize(results: list[ScenarioResult], key: str = "identity") -> dict[str, Any]:
    """Totals per identity (or per OpenClaw ``mode``: malicious met, benign LOG/ALERT), per tactic
    and per technique."""
    groups: dict[str, Any] = {}
    out: dict[str, Any] = {GROUPS[key]: groups, "techniques": {}, "tactics": {}}
    for ident in sorted({getattr(r, key) for r in results}):
        rs = [r for r in results if getattr(r, key) == ident and not r.skipped]
        mal = [r for r in rs if r.category == "malicious"]
        ben = [r for r in rs if r.category == "benign"]
        mal_met = sum(r.met and r.valid for r in mal)
        ben_alert = sum(r.action == "ALERT" for r in ben)
        ben_log = sum(r.action == "LOG" for r in ben)
        groups[ident] = {
            "malicious": len(mal), "malicious_met": mal_met,
            "malicious_alert": sum(r.action == "ALERT" for r in mal),
            "malicious_log": sum(r.action == "LOG" for r in mal),
            "malicious_missed": sum(r.action == "IGNORE" for r in mal),
            "benign": len(ben), "benign_alert": ben_alert, "benign_log": ben_log,
            "invalid": sum(not r.valid for r in rs),
            "skipped": sum(bool(r.skipped) for r in results if getattr(r, key) == ident),
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


def totals_lines(summary: dict[str, Any], key: str = "identity") -> list[str]:
    """The totals table, one row per identity (or mode)."""
    lines = [f"| {key} | malicious at expected level | malicious ALERT / LOG / missed | benign ALERT | "
             "benign LOG | invalid runs | skipped | targets (>= 95 %; 0 ALERT, <= 10 % LOG) |",
             "|---|---|---|---|---|---|---|---|"]
    for ident, s in summary[GROUPS[key]].items():
        verdict = ("met" if s["malicious_target_met"] else "not met") + " / " + \
                  ("met" if s["benign_target_met"] else "not met")
        lines.append(f"| {ident} | {_ratio(s['malicious_met'], s['malicious'])} | "
                     f"{s['malicious_alert']} / {s['malicious_log']} / {s['malicious_missed']} | "
                     f"{s['benign_alert']} | {_ratio(s['benign_log'], s['benign'])} | {s['invalid']} | "
                     f"{s['skipped']} | {verdict} |")
    return lines


def scenario_rows(results: list[ScenarioResult], key: str = "identity",
                  columns: tuple[str, ...] = ("root", "user")) -> list[str]:
    """One row per scenario, one cell per identity (or OpenClaw mode) in ``columns``."""
    by_id: dict[str, dict[str, ScenarioResult]] = defaultdict(dict)
    order: list[str] = []
    for r in results:
        if r.id not in by_id:
            order.append(r.id)
        by_id[r.id][getattr(r, key)] = r
    lines = [f"| id | tactic | techniques | expected | {' | '.join(columns)} | rules ({'; '.join(columns)}) |",
             "|---|---|---|---|" + "---|" * len(columns) + "---|"]
    for sid in order:
        rs = by_id[sid]
        any_r = next(iter(rs.values()))
        rules = "; ".join(", ".join(rs[i].rules) or "—" for i in columns if i in rs and not rs[i].skipped)
        cells = " | ".join(_cell(rs.get(c)) for c in columns)
        lines.append(f"| {sid} | {any_r.tactic} | {' '.join(any_r.technique) or '—'} | {any_r.expected} | "
                     f"{cells} | {rules or '—'} |")
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
             "### Totals against issue 13's targets", "", *totals_lines(summary), "",
             "### Per tactic", "", *tactics, "",
             "### Per technique (malicious runs, both identities)", "", *_technique_lines(summary), "",
             "### Scenarios", "", *scenario_rows(results), "", SECTION_END]
    return "\n".join(parts) + "\n"


def render_openclaw_block(results: list[ScenarioResult], summary: dict[str, Any], meta: dict[str, Any],
                          left_out: dict[str, str]) -> str:
    """The OpenClaw subset's block inside the attack-suite section of RESULTS.md."""
    modes = tuple(m for m in ("gateway", "local") if m in summary["modes"])
    parts = [OPENCLAW_BEGIN, "### Through the real OpenClaw (`make eval-attacks-openclaw`)", "",
             f"- date: {meta['date']}; commit {meta['commit']}; rules `{meta['rules']}` "
             f"(version {meta['rules_version']}); OpenClaw {meta['openclaw']}; run time {meta['duration_s']:.0f} s",
             "- a subset of the scenarios above, each one OpenClaw turn as the unprivileged `casa-agent` whose "
             "single `exec` tool call (from the fake model) is the scenario's script, in the same sandbox; "
             "gateway = `openclaw gateway run` + `openclaw agent --message`, local = `openclaw agent --local`; "
             "scored as above, over the sessions of the gateway's and the CLI's trees",
             "- cells as above", "", *totals_lines(summary, "mode"), "",
             *scenario_rows(results, "mode", modes), ""]
    if left_out:
        parts += ["Left out of the subset (they write outside the agent's home):", ""]
        parts += [f"- {sid}: {why}" for sid, why in left_out.items()] + [""]
    return "\n".join(parts + [OPENCLAW_END]) + "\n"


def _block(text: str, begin: str, end: str) -> tuple[int, int]:
    """Start and end offsets (end marker included) of a marked block, or (-1, -1)."""
    start = text.find(begin)
    stop = text.find(end, start) if start >= 0 else -1
    return (start, stop + len(end)) if start >= 0 and stop >= 0 else (-1, -1)


def _with_block(section: str, block: str) -> str:
    """``section`` (an attack-suite section) holding ``block`` just before its end marker,
    replacing the one it holds."""
    start, stop = _block(section, OPENCLAW_BEGIN, OPENCLAW_END)
    if start >= 0:
        return section[:start] + block.strip("\n") + section[stop:]
    cut = section.rfind(SECTION_END)
    return section[:cut] + block.strip("\n") + "\n\n" + section[cut:]


def replace_section(document: str, section: str) -> str:
    """``document`` with its attack-suite section replaced (or appended when it has none). The
    OpenClaw block inside the old section (replace_openclaw_block) is carried into the new one:
    the two are measured by different runs."""
    start, stop = _block(document, SECTION_BEGIN, SECTION_END)
    if start < 0:
        return document.rstrip("\n") + "\n\n" + section
    b0, b1 = _block(document[start:stop], OPENCLAW_BEGIN, OPENCLAW_END)
    if b0 >= 0:
        section = _with_block(section, document[start:stop][b0:b1])
    return document[:start] + section.rstrip("\n") + document[stop:]


def replace_openclaw_block(document: str, block: str) -> str:
    """``document`` with the OpenClaw block of its attack-suite section replaced (inserted before
    the section's end when it has none; a bare section is made when the document has none)."""
    start, stop = _block(document, SECTION_BEGIN, SECTION_END)
    if start < 0:
        bare = f"{SECTION_BEGIN}\n## Attack suite (`make eval-attacks`)\n\n{SECTION_END}\n"
        return document.rstrip("\n") + "\n\n" + _with_block(bare, block)
    return document[:start] + _with_block(document[start:stop], block) + document[stop:]


def write_results(path: Path, results: list[ScenarioResult], meta: dict[str, Any],
                  key: str = "identity") -> dict[str, Any]:
    summary = summarize(results, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"meta": meta, "summary": summary, "results": [asdict(r) for r in results]}
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return summary


def publish(path: Path, results: list[ScenarioResult], meta: dict[str, Any], key: str,
            render: Callable[[dict[str, Any]], str], replace: Callable[[str, str], str],
            snapshot: Path | None) -> tuple[dict[str, Any], list[str]]:
    """Write the results file, print the run's text (``render`` of the summary) and, with a
    ``snapshot`` document (RESULTS.md), put it there in its place (``replace``). Returns the
    summary and, per invalid run, ``id/<key>: why`` (hygiene, effects or collection)."""
    summary = write_results(path, results, meta, key)
    text = render(summary)
    print(text)
    if snapshot is not None:
        snapshot.write_text(replace(snapshot.read_text() if snapshot.exists() else "", text))
    return summary, [f"{r.id}/{getattr(r, key)}: {r.invalid_reason}" for r in results if not r.skipped and not r.valid]


def now_utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
