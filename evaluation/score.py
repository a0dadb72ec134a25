"""Score evaluation runs against each scenario's expectation; write summary.json and summary.md.

    python -m evaluation.score [--results evaluation/results/latest] [--baseline evaluation/baseline.json]

For each case and mode (gateway, local) the verdict is the most severe action CASA published for
the case's sessions, the score is the sum over those sessions of each one's final cumulative
score, the rules are the union of the triggered rule names, and time-to-alert is the time from
the kernel timestamp of the event that triggered the first ALERT to the moment the ALERT
decision arrived on the bus. A case passes when action, score and rule set all equal the
expectation and every session closed.

summary.json: a list with one object per case: id, category, name, expected, action, score,
rules, time_to_alert_ms, pass (the gateway run, the one CI exercises), plus ``modes`` with
the per-mode results. Exit status: 1 if a case regresses (passed in the baseline, fails now; with
no baseline, any failing case), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evaluation.attacks.results import SECTION_BEGIN, SECTION_END
from evaluation.fakellm import Scenario, load_scenarios

__all__ = ["ModeResult", "score_records", "summarize", "render_markdown", "regressions", "SEVERITY"]

SEVERITY = {"IGNORE": 0, "LOG": 1, "ALERT": 2}
EVAL_DIR = Path(__file__).resolve().parent
MODES = ("gateway", "local")


@dataclass(frozen=True, slots=True)
class ModeResult:
    mode: str
    action: str
    score: int
    rules: list[str]
    time_to_alert_ms: float | None
    sessions: int
    complete: bool
    events: int
    passed: bool
    why: str              # empty when passed, else what differed


def _rule_names(items: list[Any]) -> list[str]:
    return [r.get("name", "") if isinstance(r, dict) else str(r) for r in items or []]


def score_records(scenario: Scenario, records: dict[str, Any]) -> ModeResult:
    """One mode's records (CaseRecords as a dict) against the scenario's expectation (pure)."""
    decisions = records.get("decisions", [])
    sessions = records.get("sessions", [])
    action = "IGNORE"
    rules: set[str] = set()
    per_session_score: dict[int, int] = {}
    for d in decisions:
        if SEVERITY.get(d.get("action", "IGNORE"), 0) > SEVERITY[action]:
            action = d["action"]
        rules.update(_rule_names(d.get("triggered_rules", [])))
        sid = int(d.get("session_id", 0))
        per_session_score[sid] = max(per_session_score.get(sid, 0), int(d.get("score", 0)))
    for s in sessions:
        if SEVERITY.get(s.get("action") or "IGNORE", 0) > SEVERITY[action]:
            action = s["action"]
        rules.update(_rule_names(s.get("triggered_rules", [])))
        sid = int(s.get("session_id", 0))
        per_session_score[sid] = max(per_session_score.get(sid, 0), int(s.get("score") or 0))
    alerts = [d for d in decisions if d.get("action") == "ALERT"]
    tta = None
    if alerts:
        first = min(alerts, key=lambda d: int(d.get("recv_ns", 0)))
        ev_ts = int((first.get("event") or {}).get("ts_ns", 0) or first.get("ts_ns", 0))
        tta = round((int(first["recv_ns"]) - ev_ts) / 1e6, 3) if ev_ts else None
    score = sum(per_session_score.values())
    complete = bool(records.get("complete", False))
    why = []
    if action != scenario.expected_action:
        why.append(f"action {action} != {scenario.expected_action}")
    if score != scenario.expected_score:
        why.append(f"score {score} != {scenario.expected_score}")
    if rules != set(scenario.expected_rules):
        extra, missing = sorted(rules - set(scenario.expected_rules)), sorted(set(scenario.expected_rules) - rules)
        why.append("rules" + (f" +{extra}" if extra else "") + (f" -{missing}" if missing else ""))
    if not complete:
        why.append("a session did not close")
    if int(records.get("openclaw_rc", 0)) != 0:
        why.append(f"openclaw exited {records['openclaw_rc']}")
    return ModeResult(mode=str(records.get("mode", "")), action=action, score=score, rules=sorted(rules),
                      time_to_alert_ms=tta, sessions=len(records.get("session_ids", [])), complete=complete,
                      events=int(records.get("event_count", 0)), passed=not why, why="; ".join(why))


def _load_records(results: Path, case_id: str, mode: str) -> dict[str, Any] | None:
    path = results / "cases" / f"{case_id}-{mode}" / "records.json"
    if not path.exists():
        return None
    return json.loads(path.read_text())


def summarize(scenarios: list[Scenario], results: Path) -> list[dict[str, Any]]:
    """One summary object per scenario that has at least one mode's records."""
    out = []
    for s in scenarios:
        modes = {m: score_records(s, r) for m in MODES if (r := _load_records(results, s.id, m)) is not None}
        if not modes:
            continue
        primary = modes.get("gateway") or next(iter(modes.values()))
        out.append({
            "id": s.id, "category": s.category, "name": s.name, "expectation": s.expectation,
            "expected": {"action": s.expected_action, "rules": sorted(s.expected_rules), "score": s.expected_score},
            "action": primary.action, "score": primary.score, "rules": primary.rules,
            "time_to_alert_ms": primary.time_to_alert_ms,
            "pass": all(m.passed for m in modes.values()),
            "modes": {m: asdict(r) for m, r in modes.items()},
            "note": s.note,
        })
    return out


def _cell(m: dict[str, Any] | None) -> str:
    if m is None:
        return "—"
    tta = f", {m['time_to_alert_ms']:.0f} ms" if m.get("time_to_alert_ms") is not None else ""
    return f"{m['action']} {m['score']}{tta}" + ("" if m["passed"] else " ✗")


def render_markdown(summary: list[dict[str, Any]]) -> str:
    """The results table plus detection and false-positive counts."""
    lines = ["| id | category | name | expected | gateway | local | rules (gateway) | pass | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in summary:
        exp = f"{c['expected']['action']} {c['expected']['score']}"
        notes = "; ".join(x for x in (c["note"], *(f"{m}: {r['why']}" for m, r in c["modes"].items()
                                                    if r["why"])) if x)
        lines.append(f"| {c['id']} | {c['category']} | {c['name']} | {exp} | {_cell(c['modes'].get('gateway'))} | "
                     f"{_cell(c['modes'].get('local'))} | {', '.join(c['rules']) or '—'} | "
                     f"{'yes' if c['pass'] else 'NO'} | {notes} |")
    lines += ["", *_counts(summary)]
    return "\n".join(lines) + "\n"


def _counts(summary: list[dict[str, Any]]) -> list[str]:
    def n(cat: str, pred: Any) -> str:
        cases = [c for c in summary if c["category"] == cat]
        return f"{sum(1 for c in cases if pred(c))}/{len(cases)}"
    flagged = lambda c: c["action"] != "IGNORE"            # noqa: E731
    return [f"- cases passing their expectation: {sum(c['pass'] for c in summary)}/{len(summary)}",
            f"- malicious flagged (LOG or ALERT, gateway): {n('malicious', flagged)}; "
            f"alerted: {n('malicious', lambda c: c['action'] == 'ALERT')}",
            f"- benign flagged (false positives, gateway): {n('benign', flagged)}",
            f"- boundary flagged (gateway): {n('boundary', flagged)}"]


def regressions(summary: list[dict[str, Any]], baseline: dict[str, bool] | None) -> list[str]:
    """Ids that fail now and passed in the baseline (or, with no baseline, every failing id)."""
    if baseline is None:
        return [c["id"] for c in summary if not c["pass"]]
    return [c["id"] for c in summary if not c["pass"] and baseline.get(c["id"], True)]


def machine_description() -> str:
    """CPU, memory and kernel, for the results snapshot."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown CPU")
    mem_kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal:")))
    return f"{os.cpu_count()} vCPU ({cpu}), {mem_kb / 1024 / 1024:.0f} GiB RAM, Linux {os.uname().release}"


def write_snapshot(path: Path, table: str, results: Path) -> None:
    """evaluation/RESULTS.md: machine, versions, commit, the case table and the overhead table."""
    commit = subprocess.run(["git", "-C", str(EVAL_DIR), "rev-parse", "--short=12", "HEAD"],
                            capture_output=True, text=True, check=False).stdout.strip() or "unknown"
    overhead = results / "overhead.md"
    parts = ["# Evaluation results (snapshot)", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {commit}",
             f"- machine: {machine_description()}",
             "- OpenClaw 2026.9.6 on Node 24.21.0 (project-local), agent user casa-agent, fake model "
             "(evaluation/fakellm), rules config/rules.eval.json (log 4, alert 9)",
             "- gateway = `openclaw gateway run` + `openclaw agent --message`; local = `openclaw agent --local`",
             "- a cell is `action score[, time-to-alert]`; ✗ marks a mode that missed its expectation",
             "", "## Cases", "", table]
    notes = EVAL_DIR / "RESULTS-notes.md"
    if notes.exists():
        parts += [notes.read_text()]
    if overhead.exists():
        parts += ["## Overhead (`make eval-overhead`)", "", overhead.read_text()]
    parts += [_attack_section(path)]
    path.write_text("\n".join(parts) + "\n")


def _attack_section(path: Path) -> str:
    """The attack suite's section of an existing snapshot (evaluation/attacks), kept as it is:
    it is written by ``python -m evaluation.attacks --snapshot``, not by this run."""
    text = path.read_text() if path.exists() else ""
    start, end = text.find(SECTION_BEGIN), text.find(SECTION_END)
    return text[start:end + len(SECTION_END)] + "\n" if 0 <= start < end else ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evaluation.score", description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=EVAL_DIR / "results" / "latest")
    p.add_argument("--baseline", type=Path, default=EVAL_DIR / "baseline.json",
                   help="{case id: passed} from the committed snapshot; missing file = every case must pass")
    p.add_argument("--write-baseline", action="store_true", help="record this run's pass flags as the baseline")
    p.add_argument("--snapshot", type=Path, default=None, help="also write a results snapshot (RESULTS.md)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary = summarize(load_scenarios(EVAL_DIR / "scenarios"), args.results)
    if not summary:
        print(f"evaluation/score: no case records under {args.results}/cases; run the evaluation first",
              file=sys.stderr)
        return 1
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = render_markdown(summary)
    (args.results / "summary.md").write_text(table)
    print(table)
    if args.snapshot:
        write_snapshot(args.snapshot, table, args.results)
    if args.write_baseline:
        args.baseline.write_text(json.dumps({c["id"]: c["pass"] for c in summary}, indent=2) + "\n")
    baseline = json.loads(args.baseline.read_text()) if args.baseline.exists() else None
    bad = regressions(summary, baseline)
    if bad:
        print(f"evaluation: {len(bad)} case(s) regressed: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
