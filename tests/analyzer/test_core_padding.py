"""Randomized (fixed seeds): unrelated events between the steps of every golden case never lower
its verdict in history_mode "indexed".

Between the fixture's events we insert up to 10,000 events in all (every case) or up to 10,000
in every gap (every attack, M01-M10), events an agent could emit to push a step out of a count
window: reads of ordinary files by the case's own processes, repeated writes of a
few scratch files, loopback and private connects, exits of unrelated processes. The verdict
(action and score) must be at least the unpadded one. Distinct writes stay below
``history_index_cap``: filling an index is the documented overflow case
(test_history_indices.py::test_overflow_is_flagged_and_counted).
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from analyzer.core import Analyzer
from tests.analyzer.analyzer_sequences import CHECKOUT, decisions, indexed_policy, lifecycle, run_events

GOLDEN = CHECKOUT / "tests" / "fixtures" / "golden"
CASES = sorted(p.stem for p in GOLDEN.glob("*.json"))
RANK = {"IGNORE": 0, "LOG": 1, "ALERT": 2}
READS = ["/etc/hostname", "/usr/share/zoneinfo/UTC", "/home/agent/project/README.md",
         "/usr/lib/python3.11/os.py", "/etc/os-release", "/opt/app/data.json"]


def unrelated(rng: random.Random, template: dict[str, Any], tgids: list[int]) -> dict[str, Any]:
    base = {k: template[k] for k in ("ts_ns", "session_id", "uid", "root", "profile") if k in template}
    base.update(tgid=rng.choice(tgids), depth=1, ppid=100, comm="python3")
    base["tid"] = base["tgid"]
    roll = rng.random()
    if roll < 0.8:
        return {**base, "kind": "open", "path": rng.choice(READS), "flags": 0x80000, "mode": 0, "ret": 3}
    if roll < 0.9:
        return {**base, "kind": "open", "path": f"/home/agent/project/out{rng.randrange(5)}.txt",
                "flags": 0x241, "mode": 0o644, "ret": 3}
    if roll < 0.97:
        return {**base, "kind": "connect", "addr": rng.choice(["127.0.0.1", "10.0.0.2"]),
                "port": 443, "family": 2, "ret": 0}
    return {**base, "kind": "exit", "tgid": 9000 + rng.randrange(50), "exit_code": 0}


def pad(events: list[dict[str, Any]], total: int, rng: random.Random) -> list[dict[str, Any]]:
    """``events`` with ``total`` unrelated events spread at random over the gaps between them."""
    cuts = [0] * len(events)
    for _ in range(total):
        cuts[rng.randrange(len(events))] += 1
    return pad_gaps(events, cuts, rng)


def pad_gaps(events: list[dict[str, Any]], counts: list[int], rng: random.Random) -> list[dict[str, Any]]:
    """``events`` with ``counts[i]`` unrelated events right before event i."""
    tgids = sorted({e["tgid"] for e in events}) or [100]
    out: list[dict[str, Any]] = []
    for ev, n in zip(events, counts):
        out.extend(unrelated(rng, ev, tgids) for _ in range(n))
        out.append(ev)
    return out


def verdict(events: list[dict[str, Any]], rules: str) -> tuple[int, int]:
    core = Analyzer(indexed_policy(CHECKOUT / rules))
    sid = events[0]["session_id"]
    core.handle(("sessionizer.session", lifecycle(sid, "opened")), 0)
    run_events(core, events)
    (_, snap), = core.handle(("sessionizer.session", lifecycle(sid, "closed")), 0)
    return RANK[snap["action"]], snap["score"]


@pytest.mark.parametrize("case", CASES)
def test_padding_never_lowers_the_verdict(case: str):
    doc = json.loads((GOLDEN / f"{case}.json").read_text())
    base = verdict(doc["events"], doc["rules_file"])
    for seed, total in ((1, 80), (2, 1000), (3, 10_000)):
        rng = random.Random(f"{case}-{seed}")
        rank, score = verdict(pad(doc["events"], total, rng), doc["rules_file"])
        assert rank >= base[0] and score >= base[1], (case, seed, total, base, (rank, score))


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("M")])
def test_up_to_10000_events_in_every_gap_of_an_attack(case: str):
    """Each attack step separated from the next by 0-10,000 unrelated events (fixed seed)."""
    doc = json.loads((GOLDEN / f"{case}.json").read_text())
    base = verdict(doc["events"], doc["rules_file"])
    rng = random.Random(f"{case}-gaps")
    counts = [0] + [rng.choice([0, 80, rng.randrange(10_001), 10_000]) for _ in doc["events"][1:]]
    rank, score = verdict(pad_gaps(doc["events"], counts, rng), doc["rules_file"])
    assert rank >= base[0] and score >= base[1], (case, counts, base, (rank, score))


def test_padding_does_lower_the_original_window():
    """The same padding in history_mode "original" does lose M05 (what the indexed mode fixes)."""
    from tests.analyzer.analyzer_sequences import parity_policy
    doc = json.loads((GOLDEN / "M05.json").read_text())
    write = next(i for i, e in enumerate(doc["events"]) if e["kind"] == "open")
    filler = [{**doc["events"][write], "path": "/etc/hostname", "flags": 0x80000}] * 80
    events = doc["events"][:write + 1] + filler + doc["events"][write + 1:]
    core = Analyzer(parity_policy(CHECKOUT / doc["rules_file"]))
    assert not decisions(run_events(core, events))
    assert decisions(run_events(Analyzer(indexed_policy(CHECKOUT / doc["rules_file"])), events))
