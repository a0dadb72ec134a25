"""The README's "What it detects" table is the bundled pack: every rule, its weight and its tags."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^\| `(?P<name>[a-z0-9_]+)` \| (?P<weight>\d+) \| (?P<tags>[^|]*) \|")


def _readme_rows() -> dict[str, tuple[int, list[str]]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## What it detects", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = ROW.match(line)
        if m:
            rows[m["name"]] = (int(m["weight"]), [t.strip() for t in m["tags"].split(",")])
    return rows


def test_the_readme_lists_every_rule_with_its_weight_and_tags():
    pack = json.loads((ROOT / "rules.json").read_text())["rules"]
    rows = _readme_rows()
    assert list(rows) == [r["name"] for r in pack]
    for r in pack:
        assert rows[r["name"]] == (r["weight"], r["tags"]), r["name"]
