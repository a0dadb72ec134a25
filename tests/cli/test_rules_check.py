"""`casa rules check FILE` (cli/rules_check.py): located errors, exit codes, OK summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli.rules_check import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["rules.json", "config/rules.original.json", "config/rules.eval.json"])
def test_bundled_rules_ok(capsys, name):
    doc = json.loads((ROOT / name).read_text())
    n = len(doc["rules"])
    assert main([str(ROOT / name)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{ROOT / name}: OK | version=") and f"rules={n} enabled={n} log=4 alert=9" in out
    assert out.count("\n") == 1


def test_default_pack_keeps_the_original_names_and_tags_every_rule():
    """The default pack extends the original twelve (by name) and every rule says what it maps to."""
    pack = json.loads((ROOT / "rules.json").read_text())["rules"]
    original = json.loads((ROOT / "config/rules.original.json").read_text())["rules"]
    names = [r["name"] for r in pack]
    assert len(original) == 12 and {r["name"] for r in original} <= set(names)
    assert len(names) > 12 and len(set(names)) == len(names)
    for r in pack:
        assert r.get("tags") and all(t.startswith(("T", "TA")) for t in r["tags"]), r["name"]
        assert len(r.get("description", "")) > 40, r["name"]


def test_errors_are_located_and_exit_1(tmp_path, capsys):
    doc = json.loads((ROOT / "rules.json").read_text())
    doc["rules"][4]["weight"] = "six"
    doc["rules"][6]["expr"] = "history.write_then_exec_same_path ||"
    doc["thresholds"] = {"log": 10, "alert": 9}
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(doc, indent=2))
    assert main([str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    lines = path.read_text().splitlines()
    by_text = {e.split(": ", 2)[-1]: e for e in err if e.startswith("error:")}
    weight = next(e for e in err if "weight must be an integer" in e)
    assert "rule 'download_then_suspicious_exec'" in weight
    assert '"weight": "six"' in lines[int(weight.split(":")[2]) - 1]
    expr = next(e for e in err if "expr does not compile" in e)
    assert "rule 'write_then_exec_same_path'" in expr
    assert '"expr"' in lines[int(expr.split(":")[2]) - 1]
    assert any("thresholds.alert (9) must be >= thresholds.log (10)" in e for e in err)
    assert err[-1] == f"{path}: INVALID | errors=3" and len(by_text) == 3


def test_warnings_are_printed_but_ok(tmp_path, capsys):
    doc = json.loads((ROOT / "rules.json").read_text())
    doc["colour"] = "blue"
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc, indent=2))
    assert main([str(path)]) == 0
    cap = capsys.readouterr()
    assert "warning: " in cap.err and "unknown top-level key 'colour' is ignored" in cap.err
    assert cap.out.rstrip().endswith("warnings=1")


def test_missing_file_and_bad_usage(tmp_path, capsys):
    assert main([str(tmp_path / "nope.json")]) == 1
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_runs_as_a_module_under_timeout():
    r = subprocess.run(["timeout", "-s", "INT", "20", sys.executable, "-m", "cli.rules_check",
                        str(ROOT / "config" / "rules.eval.json")], capture_output=True, text=True,
                       cwd=ROOT, check=False)
    assert r.returncode == 0 and ": OK | version=" in r.stdout


def test_notes_say_which_default_applies_and_unknown_fields_fail(tmp_path, capsys):
    doc = json.loads((ROOT / "rules.json").read_text())
    doc["rules"][0].pop("enabled")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(doc, indent=2))
    assert main([str(path)]) == 0
    err = capsys.readouterr().err
    assert "note: " in err and "rule 'memfd_or_deleted_exec': no 'enabled', so the default false applies" in err
    assert main(["-q", str(path)]) == 0 and "note:" not in capsys.readouterr().err
    doc["rules"][1]["expr"] = "execution.memfd_exec"
    path.write_text(json.dumps(doc, indent=2))
    assert main([str(path)]) == 1
    err = capsys.readouterr().err
    assert "rule 'sensitive_file_then_network' expr names execution.memfd_exec, which is not a context field" in err
