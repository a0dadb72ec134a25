"""Score the evaluation's two columns; write summary.json per column, summary.md and RESULTS.md.

    python -m evaluation.score [--results evaluation/results/latest] [--baseline evaluation/baseline.json]

The runner writes each rule pack's cases under ``results/<pack>/cases`` (``--pack``). For each
case and mode (gateway, local) the verdict is the most severe action CASA published for the
case's sessions, the score is the sum over those sessions of each one's final cumulative score,
the rules are the union of the triggered rule names, and time-to-alert is the time from the
kernel timestamp of the event that triggered the first ALERT to the moment the ALERT decision
arrived on the bus.

The two columns are judged differently. **original** (config/rules.eval.json, the parity run): a
case passes when action, score and rule set all equal the scenario's expectation, which is that
pack's arithmetic. **default** (rules.json with the evaluation's analysis values): the expected
scores and rule names are the original pack's, so a case passes when its action meets its intent
(:func:`intent`): malicious at or above the expected level, benign IGNORE, boundary by the
direction of its expectation. Either way every session must have closed and the turn succeeded.

``results/<pack>/summary.json``: a list with one object per case: id, category, name, expected,
judge, intent, action, score, rules, time_to_alert_ms (the gateway run, the one CI exercises),
pass, plus ``modes`` with the per-mode results. baseline.json holds, per column, each case's pass
flag and per-mode action, score and rules (an older flat ``{id: passed}`` file is the original
column's). Exit status: 1 if a case of a column regresses (passed in that column's baseline,
fails now; with no baseline file, any failing case), else 0.
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
from evaluation.cases import MODES
from evaluation.command import RESULTS_DIR
from evaluation.fakellm import Scenario, load_scenarios
from evaluation.toolchain import EVAL_DIR

__all__ = ["ModeResult", "score_records", "intent", "summarize", "render_markdown", "render_default",
           "render_columns", "column_totals", "baseline_changes", "load_baseline", "regressions", "SEVERITY",
           "PACKS"]

SEVERITY = {"IGNORE": 0, "LOG": 1, "ALERT": 2}
OVERHEAD_HEADING = "## Overhead (`make eval-overhead`)"
PACKS = {"default": "intent", "original": "exact"}      # the runner's --pack, and how each is judged
PACK_TITLES = {"default": "default pack (rules.json + evaluation values, indexed)",
               "original": "original pack (config/rules.eval.json)"}


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


def intent(scenario: Scenario) -> str:
    """What the default pack is held to for a case: ``IGNORE`` or ``>= LOG`` / ``>= ALERT``.

    A malicious case must reach its expected level; a benign one must stay IGNORE (B10 too,
    whose ALERT expectation is only what the original pack's arithmetic gives a /tmp/ script
    written and run); a boundary case by the direction of its expectation (IGNORE stays IGNORE,
    a flagged one must reach its level). Exact scores and rule names are the original pack's.
    """
    if scenario.category == "benign" or scenario.expected_action == "IGNORE":
        return "IGNORE"
    return f">= {scenario.expected_action}"


def _meets_intent(scenario: Scenario, action: str) -> bool:
    want = intent(scenario)
    if want == "IGNORE":
        return action == "IGNORE"
    return SEVERITY.get(action, 0) >= SEVERITY[scenario.expected_action]


def _exact_misses(scenario: Scenario, action: str, score: int, rules: set[str]) -> list[str]:
    why = []
    if action != scenario.expected_action:
        why.append(f"action {action} != {scenario.expected_action}")
    if score != scenario.expected_score:
        why.append(f"score {score} != {scenario.expected_score}")
    if rules != set(scenario.expected_rules):
        extra, missing = sorted(rules - set(scenario.expected_rules)), sorted(set(scenario.expected_rules) - rules)
        why.append("rules" + (f" +{extra}" if extra else "") + (f" -{missing}" if missing else ""))
    return why


def score_records(scenario: Scenario, records: dict[str, Any], judge: str = "exact") -> ModeResult:
    """One mode's records (CaseRecords as a dict) against the scenario (pure).

    ``judge="exact"`` (the original pack): action, score and rule set equal the expectation.
    ``judge="intent"`` (the default pack): the action meets :func:`intent`.
    """
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
    if judge == "exact":
        why = _exact_misses(scenario, action, score, rules)
    elif judge == "intent":
        why = [] if _meets_intent(scenario, action) else [f"action {action}, wanted {intent(scenario)}"]
    else:
        raise ValueError(f"unknown judge {judge!r}: exact or intent")
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


def summarize(scenarios: list[Scenario], results: Path, judge: str = "exact") -> list[dict[str, Any]]:
    """One summary object per scenario that has at least one mode's records under ``results``."""
    out = []
    for s in scenarios:
        modes = {m: score_records(s, r, judge) for m in MODES
                 if (r := _load_records(results, s.id, m)) is not None}
        if not modes:
            continue
        primary = modes.get("gateway") or next(iter(modes.values()))
        out.append({
            "id": s.id, "category": s.category, "name": s.name, "expectation": s.expectation,
            "expected": {"action": s.expected_action, "rules": sorted(s.expected_rules), "score": s.expected_score},
            "judge": judge, "intent": intent(s) if judge == "intent" else "exact",
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


def _expected_cell(c: dict[str, Any]) -> str:
    return f"{c['expected']['action']} {c['expected']['score']}"


def _notes(c: dict[str, Any]) -> str:
    return "; ".join(x for x in (c["note"], *(f"{m}: {r['why']}" for m, r in c["modes"].items() if r["why"])) if x)


def render_default(summary: list[dict[str, Any]]) -> str:
    """The default pack's table: each case judged by its intent (score.intent), not exactly."""
    lines = ["| id | category | name | expected (original pack) | judged as | gateway | local | rules (gateway) "
             "| pass | note |", "|---|---|---|---|---|---|---|---|---|---|"]
    for c in summary:
        lines.append(f"| {c['id']} | {c['category']} | {c['name']} | {_expected_cell(c)} | {c['intent']} | "
                     f"{_cell(c['modes'].get('gateway'))} | {_cell(c['modes'].get('local'))} | "
                     f"{', '.join(c['rules']) or '—'} | {'yes' if c['pass'] else 'NO'} | {_notes(c)} |")
    return "\n".join(lines) + "\n"


def _all_modes(c: dict[str, Any], pred: Any) -> bool:
    return bool(c["modes"]) and all(pred(m["action"]) for m in c["modes"].values())


def column_totals(summary: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Issue 13's targets for the 30 cases, [met, of], a case counting when every mode meets it."""
    mal = [c for c in summary if c["category"] == "malicious"]
    quiet = [c for c in summary if c["category"] == "benign" and c["expected"]["action"] == "IGNORE"]
    at_or_above = [c for c in mal if _all_modes(c, lambda a, c=c: SEVERITY.get(a, 0) >=
                                                SEVERITY[c["expected"]["action"]])]
    return {"malicious_at_or_above": [len(at_or_above), len(mal)],
            "benign_ignore": [sum(_all_modes(c, lambda a: a == "IGNORE") for c in quiet), len(quiet)],
            "passing": [sum(c["pass"] for c in summary), len(summary)]}


def baseline_changes(summary: list[dict[str, Any]], base: dict[str, Any] | None) -> list[str]:
    """How a column differs from its baseline: per case the pass flag and, where the baseline
    holds them, each mode's action, score and rules. Empty means unchanged."""
    if base is None:
        return ["no baseline"]
    out = []
    for c in summary:
        was = base.get(c["id"])
        if was is None:
            out.append(f"{c['id']}: not in the baseline")
            continue
        before = was if isinstance(was, bool) else was.get("pass")
        if before != c["pass"]:
            out.append(f"{c['id']}: pass {before} -> {c['pass']}")
        for mode, now in c["modes"].items():
            prev = was.get(mode) if isinstance(was, dict) else None
            cur = {"action": now["action"], "score": now["score"], "rules": now["rules"]}
            if prev is not None and prev != cur:
                out.append(f"{c['id']} {mode}: {prev['action']} {prev['score']} -> {cur['action']} {cur['score']}"
                           + ("" if prev["rules"] == cur["rules"] else " (rules differ)"))
    return out


def baseline_entry(c: dict[str, Any]) -> dict[str, Any]:
    """What the baseline keeps of a case: its pass flag and each mode's action, score and rules."""
    return {"pass": c["pass"], **{m: {"action": r["action"], "score": r["score"], "rules": r["rules"]}
                                  for m, r in c["modes"].items()}}


def load_baseline(path: Path) -> dict[str, dict[str, Any]] | None:
    """{pack: {case id: entry}}; an older flat {case id: passed} file is the original pack's."""
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data and all(isinstance(v, bool) for v in data.values()):
        return {"original": data}
    return data


def render_columns(columns: dict[str, list[dict[str, Any]]], baseline: dict[str, Any] | None) -> str:
    """Both columns: the totals against issue 13's targets, then the default pack's table and the
    original pack's (the parity run, judged exactly as before)."""
    lines = ["| column | malicious at or above expected | B01–B09 IGNORE | cases meeting their judgement "
             "| unchanged from baseline |", "|---|---|---|---|---|"]
    for pack, summary in columns.items():
        t = column_totals(summary)
        changes = baseline_changes(summary, (baseline or {}).get(pack))
        same = "yes" if not changes else "no baseline" if changes == ["no baseline"] else "NO: " + "; ".join(changes)
        lines.append(f"| {PACK_TITLES[pack]} | {'/'.join(map(str, t['malicious_at_or_above']))} | "
                     f"{'/'.join(map(str, t['benign_ignore']))} | {'/'.join(map(str, t['passing']))} | {same} |")
    lines += ["", "A case counts in a total when both modes meet it. Judgement: default pack by intent "
              "(`judged as`), original pack exactly (action, score and rule set).", ""]
    if "default" in columns:
        lines += ["### Default pack", "", render_default(columns["default"])]
    if "original" in columns:
        lines += ["### Original pack (parity)", "", render_markdown(columns["original"])]
    return "\n".join(lines)


def regressions(summary: list[dict[str, Any]], baseline: dict[str, Any] | None) -> list[str]:
    """Ids that fail now and passed in the baseline (or, with no baseline, every failing id)."""
    if baseline is None:
        return [c["id"] for c in summary if not c["pass"]]
    def passed(v: Any) -> bool:
        return v if isinstance(v, bool) else bool(v.get("pass", True))
    return [c["id"] for c in summary if not c["pass"] and passed(baseline.get(c["id"], True))]


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
             "(evaluation/fakellm); thresholds log 4, alert 9",
             "- two columns (`--pack`): **default pack** = rules.json's rules with config/rules.eval.json's "
             "analysis values except `history_mode` (indexed, the default's), composed by the runner "
             "(`evaluation/packs.py` `default_pack_rules`); **original pack** = config/rules.eval.json "
             "(the original twelve rules, `history_mode` original)",
             "- gateway = `openclaw gateway run` + `openclaw agent --message`; local = `openclaw agent --local`",
             "- a cell is `action score[, time-to-alert]`; ✗ marks a mode that missed its judgement",
             "", "## Cases", "", table]
    notes = EVAL_DIR / "RESULTS-notes.md"
    if notes.exists():
        parts += [notes.read_text()]
    if overhead.exists():
        parts += [OVERHEAD_HEADING, "", overhead.read_text()]
    else:
        parts += [_overhead_section(path)]
    parts += [_attack_section(path)]
    path.write_text("\n".join(parts) + "\n")


def _overhead_section(path: Path) -> str:
    """The overhead section of an existing snapshot, kept when this results directory has no
    overhead.md (``make eval-overhead`` is a separate run)."""
    text = path.read_text() if path.exists() else ""
    start = text.find(OVERHEAD_HEADING)
    if start < 0:
        return ""
    end = text.find(SECTION_BEGIN, start)
    return text[start:end if end >= 0 else len(text)].rstrip("\n") + "\n"


def _attack_section(path: Path) -> str:
    """The attack suite's section of an existing snapshot (evaluation/attacks), kept as it is:
    it is written by ``python -m evaluation.attacks --snapshot``, not by this run."""
    text = path.read_text() if path.exists() else ""
    start, end = text.find(SECTION_BEGIN), text.find(SECTION_END)
    return text[start:end + len(SECTION_END)] + "\n" if 0 <= start < end else ""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m evaluation.score", description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=RESULTS_DIR,
                   help="the runner's --out: each column's cases are under RESULTS/<pack>/cases")
    p.add_argument("--pack", choices=(*PACKS, "both"), default="both", help="which columns to score")
    p.add_argument("--baseline", type=Path, default=EVAL_DIR / "baseline.json",
                   help="per column, each case's pass flag and verdicts from the committed snapshot; "
                        "missing file = every case must pass")
    p.add_argument("--write-baseline", action="store_true", help="record this run's pass flags as the baseline")
    p.add_argument("--snapshot", type=Path, default=None, help="also write a results snapshot (RESULTS.md)")
    return p.parse_args(argv)


def _columns(results: Path, packs: str = "both") -> dict[str, list[dict[str, Any]]]:
    """Each pack the runner wrote under ``results/<pack>/cases``, scored by its judge."""
    scenarios = load_scenarios(EVAL_DIR / "scenarios")
    out = {}
    for pack, judge in PACKS.items():
        if packs not in ("both", pack):
            continue
        summary = summarize(scenarios, results / pack, judge)
        if summary:
            out[pack] = summary
    return out


def _exit_status(columns: dict[str, list[dict[str, Any]]], baseline: dict[str, Any] | None) -> int:
    """1 when a case of a column regresses against that column's baseline (no baseline file: any
    failing case); a column the baseline does not hold yet is reported, not judged."""
    status = 0
    for pack, summary in columns.items():
        if baseline is not None and pack not in baseline:
            print(f"evaluation: the baseline holds no {pack} column; not judged (--write-baseline records it)",
                  file=sys.stderr)
            continue
        bad = regressions(summary, None if baseline is None else baseline[pack])
        if bad:
            print(f"evaluation: {pack} pack: {len(bad)} case(s) regressed: {', '.join(bad)}", file=sys.stderr)
            status = 1
    return status


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    columns = _columns(args.results, args.pack)
    if not columns:
        print(f"evaluation/score: no case records under {args.results}/{{default,original}}/cases; "
              "run the evaluation first", file=sys.stderr)
        return 1
    for pack, summary in columns.items():
        (args.results / pack / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    baseline = load_baseline(args.baseline)
    table = render_columns(columns, baseline)
    (args.results / "summary.md").write_text(table)
    print(table)
    if args.snapshot:
        write_snapshot(args.snapshot, table, args.results)
    if args.write_baseline:
        kept = dict(baseline or {})
        kept.update({p: {c["id"]: baseline_entry(c) for c in summary} for p, summary in columns.items()})
        args.baseline.write_text(json.dumps(kept, indent=2) + "\n")
        return 0
    return _exit_status(columns, baseline)


if __name__ == "__main__":
    sys.exit(main())
