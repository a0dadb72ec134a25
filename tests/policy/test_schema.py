"""rules.json loading and validation (docs/original.md §9.1, §8.1, §13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policy import PolicyError, load_policy, parse_policy
from policy.defaults import INT_DEFAULTS, LIST_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]


def doc(**over) -> dict:
    """The original twelve (config/rules.original.json): the tests below count and index them."""
    base = json.loads((ROOT / "config" / "rules.original.json").read_text())
    base["analysis"].pop("history_mode")   # so the defaults under test apply
    base.update(over)
    return base


def parse(d: dict | str) -> object:
    text = d if isinstance(d, str) else json.dumps(d, indent=2)
    return parse_policy(text.encode(), "r.json")


def errors_of(d: dict | str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse(d)
    return info.value.problems


def test_original_pack_is_the_original_twelve():
    p = load_policy(ROOT / "config" / "rules.original.json")
    assert [r.name for r in p.rules] == [
        "memfd_or_deleted_exec", "sensitive_file_then_network",
        "sensitive_file_exfiltration_via_tooling", "sensitive_file_then_suspicious_exec",
        "download_then_suspicious_exec", "download_then_shell_temp_exec",
        "write_then_exec_same_path", "write_then_exec_from_suspicious_path", "burst_network_scan",
        "burst_exec_from_shell", "opened_deleted_path", "dangerous_caps_without_seccomp"]
    assert [r.weight for r in p.rules] == [9, 4, 5, 6, 6, 4, 5, 4, 6, 4, 5, 8]
    assert all(r.enabled for r in p.rules)
    assert (p.thresholds.log, p.thresholds.alert) == (4, 9)
    a = p.analysis
    assert (a.burst_open_threshold, a.burst_connect_threshold, a.burst_exec_threshold) == (10, 5, 5)
    assert a.sensitive_history_window_seconds == 10 and a.lineage_max_depth == 6
    assert "/proc/" in a.suspicious_path_patterns
    assert p.warnings == ()
    assert len(p.version) == 12 and int(p.version, 16) >= 0


def test_eval_rules_add_fake_fs_and_loopback_ports():
    p = load_policy(ROOT / "config" / "rules.eval.json")
    assert "/srv/casa-eval/fake_fs/" in p.analysis.sensitive_path_prefixes
    assert p.analysis.allowed_loopback_ports == (18000, 18081, 18082)
    assert len(p.enabled_rules) == 12


def test_version_changes_with_bytes():
    d = doc()
    v1 = parse(d).version
    d["thresholds"]["log"] = 5
    assert parse(d).version != v1


def test_zero_and_empty_fall_back_to_code_defaults():
    d = doc()
    d["analysis"].update(burst_exec_threshold=0, sensitive_history_window_seconds=0,
                         shell_names=[], recent_event_limit=0)
    del d["analysis"]["burst_open_threshold"]
    a = parse(d).analysis
    assert a.burst_exec_threshold == INT_DEFAULTS["burst_exec_threshold"] == 3
    assert a.sensitive_history_window_seconds == 30
    assert a.burst_open_threshold == 8
    assert a.recent_event_limit == 64
    assert a.shell_names == LIST_DEFAULTS["shell_names"]


def test_list_entries_are_trimmed_and_blank_ones_dropped():
    d = doc()
    d["analysis"]["shell_names"] = [" sh ", "", "bash"]
    p = parse(d)
    assert p.analysis.shell_names == ("sh", "bash")
    assert any("blank entries" in w for w in p.warnings)


def test_lineage_max_depth_is_required_and_positive():
    d = doc()
    d["analysis"]["lineage_max_depth"] = 0
    (msg,) = errors_of(d)
    assert "lineage_max_depth must be > 0, got 0" in msg and msg.startswith("r.json:")
    del d["analysis"]["lineage_max_depth"]
    assert any("lineage_max_depth is required" in m for m in errors_of(d))


def test_thresholds_out_of_order():
    (msg,) = errors_of(doc(thresholds={"log": 9, "alert": 4}))
    assert "thresholds.alert (4) must be >= thresholds.log (9)" in msg
    assert msg.startswith("r.json:")


def test_negative_threshold_and_wrong_type():
    problems = errors_of(doc(thresholds={"log": -1, "alert": "9"}))
    assert any("thresholds.log must be >= 0, got -1" in m for m in problems)
    assert any("thresholds.alert must be an integer, not a string" in m for m in problems)


def test_duplicate_names_point_at_the_second_rule():
    d = doc()
    d["rules"].append(dict(d["rules"][0]))
    (msg,) = errors_of(d)
    assert "rule 'memfd_or_deleted_exec' (rule #13): duplicate name; rule #1 already uses it" in msg
    line = int(msg.split(":")[1])
    text = json.dumps(d, indent=2).splitlines()
    assert text[line - 1].strip() == "{"   # the opening of the 13th rule object
    assert line > 100


def test_invalid_cel_names_rule_field_and_line():
    d = doc()
    d["rules"][2]["expr"] = "history.sensitive_then_network &&"
    (msg,) = errors_of(d)
    assert "rule 'sensitive_file_exfiltration_via_tooling' expr does not compile" in msg
    line = int(msg.split(":")[1])
    assert '"expr"' in json.dumps(d, indent=2).splitlines()[line - 1]


def test_undeclared_variable_and_unknown_field_are_errors_naming_rule_and_field():
    d = doc()
    d["rules"][0]["expr"] = "proc.memfd"
    assert any("undeclared variable 'proc'" in m for m in errors_of(d))
    d["rules"][0]["expr"] = "execution.memfd_exec"
    (msg,) = errors_of(d)
    assert "rule 'memfd_or_deleted_exec' expr names execution.memfd_exec, which is not a context " \
           "field (did you mean execution.memfd_or_deleted_exec?)" in msg
    assert '"expr"' in json.dumps(d, indent=2).splitlines()[int(msg.split(":")[1]) - 1]
    d["rules"][0]["expr"] = 'execution["memfd_exec"] || has(history.nope)'
    problems = " ".join(errors_of(d))
    assert "execution.memfd_exec" in problems and "history.nope" in problems


@pytest.mark.parametrize("expr, fragment", [
    ("history.burst_exec > 3", "compares history.burst_exec (a bool) with 3 (an int) using '>'"),
    ("capability.dangerous_count == true", "compares capability.dangerous_count (an int) with true (a bool)"),
    ("capability.dangerous_count >= 1.5", "(a double)"),
    ("capability.dangerous_count", "is an int (capability.dangerous_count), but a rule matches only"),
    ("!capability.dangerous_count", "'!' needs a bool, but capability.dangerous_count is an int"),
    ("history.overflow && capability.dangerous_count", "&& needs a bool"),
    ("history.overflow + 1 > 0", "'+' of history.overflow (a bool) and 1 (an int) is not defined"),
    ("history.overflow.x", "selects .x of history.overflow, which is a bool"),
    ("history.overflow ? 1 : 'x'", "?: gives an int (1) or a string"),
])
def test_wrong_types_are_errors(expr, fragment):
    d = doc()
    d["rules"][0]["expr"] = expr
    assert any(fragment in m and "rule 'memfd_or_deleted_exec'" in m for m in errors_of(d)), errors_of(d)


@pytest.mark.parametrize("expr", [
    "capability.dangerous_count >= 2 && !history.overflow",
    "history['overflow'] || execution.masquerade == true",
    "session_id % 2 == 0 && capability.has_dangerous_caps",
    "[1, 2].exists(x, x > 1) && history.udp_exfil",
    "has(history.overflow) && (capability.dangerous_count > 0 ? true : false)",
    "size('ab') == 2 && 'a' + 'b' == 'ab' && history.bind_shell",
    "history.overflow != null && -capability.dangerous_count < 0",
])
def test_well_typed_expressions_pass(expr):
    d = doc()
    d["rules"][0]["expr"] = expr
    assert parse(d).rules[0].expr == expr


def test_disabled_rules_are_checked_but_only_warned_about():
    d = doc()
    d["rules"][0].update(expr="(((", enabled=False)
    d["rules"][1].update(expr="execution.memfd_exec", enabled=False)
    p = parse(d)
    assert not p.rules[0].enabled and len(p.enabled_rules) == 10
    assert any("rule 'memfd_or_deleted_exec' (disabled) expr does not compile" in w for w in p.warnings)
    assert any("(disabled) expr names execution.memfd_exec" in w for w in p.warnings)


def test_wrong_rule_field_types():
    d = doc()
    d["rules"][1]["weight"] = "4"
    d["rules"][2]["enabled"] = "yes"
    problems = errors_of(d)
    assert any("rule 'sensitive_file_then_network': weight must be an integer, not a string" in m
               for m in problems)
    assert any("rule 'sensitive_file_exfiltration_via_tooling': enabled must be true or false" in m
               for m in problems)


def test_missing_name_and_missing_enabled():
    d = doc()
    d["rules"][0].pop("name")
    assert any("rule #1: name is required" in m for m in errors_of(d))
    d = doc()
    d["rules"][0].pop("enabled")
    p = parse(d)
    assert not p.rules[0].enabled and not p.warnings
    assert any("rule 'memfd_or_deleted_exec': no 'enabled', so the default false applies, so the "
               "rule is disabled" in n for n in p.notes)


@pytest.mark.parametrize("key, shown, value", [("weight", "0", 0), ("description", '""', ""),
                                               ("tags", "[]", ())])
def test_missing_fields_with_a_documented_default_are_notes(key, shown, value):
    d = doc()
    d["rules"][3].pop(key, None)
    p = parse(d)
    assert getattr(p.rules[3], key) == value and not p.warnings
    assert any(f"no '{key}', so the default {shown} applies" in n for n in p.notes)


def test_legacy_feature_match_min_value():
    d = doc(rules=[
        {"name": "a", "feature": "history.burst_exec", "match": "bool_true", "weight": 1, "enabled": True},
        {"name": "b", "feature": "history.burst_open", "weight": 1, "enabled": True},
        {"name": "c", "feature": "capability.dangerous_count", "match": "number_gte", "min_value": 2,
         "weight": 1, "enabled": True},
    ])
    assert [r.expr for r in parse(d).rules] == [
        "history.burst_exec", "history.burst_open", "capability.dangerous_count >= 2"]


def test_legacy_errors():
    d = doc(rules=[{"name": "c", "feature": "capability.dangerous_count", "match": "number_gte",
                    "enabled": True}])
    assert any("requires a numeric min_value" in m for m in errors_of(d))
    d = doc(rules=[{"name": "c", "feature": "x", "match": "regex", "enabled": True}])
    assert any("match must be one of" in m for m in errors_of(d))
    d = doc(rules=[{"name": "c", "enabled": True}])
    assert any("rule 'c': needs an expr (or a legacy feature)" in m for m in errors_of(d))


def test_unknown_keys_are_ignored_with_a_warning():
    d = doc(extra=1)
    d["analysis"]["burst_exce_threshold"] = 2
    d["rules"][0]["severity"] = "high"
    p = parse(d)
    text = "\n".join(p.warnings)
    assert "unknown top-level key 'extra' is ignored" in text
    assert "unknown analysis field 'burst_exce_threshold' is ignored" in text
    assert "rule 'memfd_or_deleted_exec': unknown field 'severity' is ignored" in text


def test_empty_file_non_json_non_object(tmp_path):
    with pytest.raises(PolicyError, match="file is empty"):
        parse("")
    with pytest.raises(PolicyError, match=r"r.json:2:\d+: not valid JSON"):
        parse('{\n  "analysis": ,\n}')
    with pytest.raises(PolicyError, match="top level must be an object"):
        parse("[1, 2]")
    with pytest.raises(PolicyError, match="not UTF-8"):
        parse_policy(b"{\xff}", "r.json")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.json")


def test_wrong_analysis_types():
    d = doc()
    d["analysis"].update(burst_window_seconds="10", shell_names="sh", allowed_loopback_ports=[70000],
                         recent_event_limit=True)
    problems = "\n".join(errors_of(d))
    assert "analysis.burst_window_seconds must be an integer, not a string" in problems
    assert "analysis.shell_names must be a list of strings" in problems
    assert "analysis.allowed_loopback_ports must be a list of port numbers 0..65535" in problems
    assert "analysis.recent_event_limit must be an integer, not a boolean" in problems


def test_unparsable_ignored_ip_is_skipped():
    d = doc()
    d["analysis"]["ignored_connect_ips"] = ["10.0.0.1", "nope"]
    p = parse(d)
    assert p.analysis.ignored_connect_ips == ("10.0.0.1",)
    assert any("'nope' is not an IP address; skipped" in w for w in p.warnings)


def test_policy_is_immutable():
    p = parse(doc())
    with pytest.raises(AttributeError):
        p.thresholds.log = 1  # type: ignore[misc]


def test_new_analysis_fields_take_their_defaults_and_validate():
    a = parse(doc()).analysis
    assert a.history_mode == "indexed" and a.history_horizon_seconds == 600
    assert "/usr/bin" in a.system_dirs and "~/.ssh/id_*" in a.credential_paths
    assert dict(a.credential_consumers)["~/.ssh/*"][0] == "ssh"
    d = doc()
    d["analysis"] = {**d["analysis"], "history_mode": "original", "history_horizon_seconds": 30,
                     "credential_consumers": {"~/.x": ["xtool"]}}
    a = parse(d).analysis
    assert (a.history_mode, a.history_horizon_seconds) == ("original", 30)
    assert a.credential_consumers == (("~/.x", ("xtool",)),)
    d["analysis"]["history_mode"] = "windowed"
    assert any("history_mode must be one of" in e for e in errors_of(d))
    d["analysis"]["history_mode"] = "original"
    d["analysis"]["credential_consumers"] = {"~/.x": "xtool"}
    assert any("credential_consumers must be an object" in e for e in errors_of(d))


def test_rule_tags_must_be_attack_ids():
    d = doc()
    d["rules"][0]["tags"] = ["T1620", "T1059.004", "TA0002"]
    assert parse(d).rules[0].tags == ("T1620", "T1059.004", "TA0002")
    d["rules"][0]["tags"] = ["T1620", "fileless"]
    assert any("not ATT&CK technique or tactic ids" in e and "'fileless'" in e for e in errors_of(d))
    d["rules"][0]["tags"] = "T1620"
    assert any("tags must be a list" in e for e in errors_of(d))


def test_referenced_fields_names_the_declared_fields_an_expression_selects():
    from policy.expressions import referenced_fields
    expr = ("history.sensitive_then_network && (execution.shell_in_chain || execution.shell_in_chain"
            " || capability.dangerous_count >= 2 || history.typo) && session_id > 0")
    assert referenced_fields(expr) == ("capability.dangerous_count", "execution.shell_in_chain",
                                       "history.sensitive_then_network")
    assert referenced_fields("history.x &&") == ()


def test_original_pack_is_the_bundled_twelve_in_original_mode():
    """config/rules.original.json: today's rules and thresholds exactly, plus history_mode."""
    root = Path(__file__).resolve().parents[2]
    original = json.loads((root / "config" / "rules.original.json").read_text())
    policy = load_policy(root / "config" / "rules.original.json")
    assert policy.analysis.history_mode == "original" and len(policy.enabled_rules) == 12
    assert (policy.thresholds.log, policy.thresholds.alert) == (4, 9)
    assert [(r["name"], r["weight"]) for r in original["rules"]] == [
        ("memfd_or_deleted_exec", 9), ("sensitive_file_then_network", 4),
        ("sensitive_file_exfiltration_via_tooling", 5), ("sensitive_file_then_suspicious_exec", 6),
        ("download_then_suspicious_exec", 6), ("download_then_shell_temp_exec", 4),
        ("write_then_exec_same_path", 5), ("write_then_exec_from_suspicious_path", 4),
        ("burst_network_scan", 6), ("burst_exec_from_shell", 4), ("opened_deleted_path", 5),
        ("dangerous_caps_without_seccomp", 8)]
