"""The OpenClaw subset of the attack suite, its pure parts (no root, no OpenClaw): the subset
itself, what the fake model is told to do, how OpenClaw's tool result is read, the rules copy,
the roots the records are followed from, and the block in RESULTS.md."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.attacks.collect import tree_pids
from evaluation.attacks.openclaw import LEFT_OUT, SANDBOX_RESOLVER, SUBSET, openclaw_rules, prompt_for
from evaluation.attacks.openclaw_keeper import exec_args, model_scenario, tool_outcome
from evaluation.attacks.results import (OPENCLAW_BEGIN, OPENCLAW_END, SECTION_BEGIN, SECTION_END, ScenarioResult,
                                        met, render_openclaw_block, replace_openclaw_block, replace_section,
                                        summarize)
from evaluation.attacks.scenario import load_scenarios
from evaluation.attacks.servers import LOOPBACK_PORTS
from evaluation.fakellm.server import INTERNAL_MARKER, choose_reply, last_tool_result

TABLE = {s.id: s for s in load_scenarios()}
CHOSEN = [TABLE[i] for i in SUBSET]


def test_the_subset_covers_the_tactics_the_brief_names_with_enough_runs() -> None:
    attacks = [s for s in CHOSEN if s.category == "malicious"]
    scripts = "\n".join(s.script for s in attacks)
    assert len(attacks) >= 8 and len([s for s in CHOSEN if s.category == "benign"]) >= 4
    for needle in ("/dev/tcp/", "pty.spawn", "| sh", ".ssh/id_rsa", ".bashrc", "systemd/user", ".git/hooks",
                   "chmod +x", "openclaw-state-locks", "sleep 7", "openclaw agent -m"):
        assert needle in scripts, needle
    assert {"command-and-control", "persistence", "credential-access", "detection-evasion"} <= {
        s.tactic for s in attacks}


def test_the_subset_runs_as_the_unprivileged_agent_and_left_out_scenarios_say_why() -> None:
    assert len(set(SUBSET)) == len(SUBSET)
    assert not [s.id for s in CHOSEN if s.needs_root]
    for sid, why in LEFT_OUT.items():
        assert sid in TABLE and sid not in SUBSET and why.strip()


def test_the_prompt_is_neutral_and_unique_because_casa_sees_the_cli_argv() -> None:
    prompts = {prompt_for(s) for s in CHOSEN}
    assert len(prompts) == len(CHOSEN)
    for s in CHOSEN:
        words = {w for w in s.id.split("-") if len(w) > 3} | {"curl", "shell", "ssh", "exfil", "persist"}
        assert not any(w in prompt_for(s).lower() for w in words), prompt_for(s)


def _spec(sid: str) -> dict:
    sc = TABLE[sid]
    return {"scenario": sc.as_spec(), "identity": {"home": "/var/lib/casa-agent"}, "prompt": prompt_for(sc)}


def test_the_fake_model_answers_one_exec_of_the_script_then_its_final_text() -> None:
    spec = _spec("atk-curl-pipe-sh")
    model = model_scenario(spec)
    first = choose_reply([model], [{"role": "user", "content": f"[Fri] {spec['prompt']}"}])
    assert first.call is not None and first.call.tool == "exec"
    assert first.call.args["command"] == TABLE["atk-curl-pipe-sh"].script
    assert first.call.args["workdir"] == "/var/lib/casa-agent/project"
    done = choose_reply([model], [{"role": "user", "content": spec["prompt"]},
                                  {"role": "assistant", "tool_calls": [{"id": "c"}]},
                                  {"role": "tool", "content": "ok"},
                                  {"role": "user", "content": INTERNAL_MARKER + " context"}])
    assert done.call is None and done.text


def test_openclaw_kills_the_command_at_the_scenario_timeout_and_never_backgrounds_it_before() -> None:
    args = exec_args({"script": "sleep 7", "timeout_s": 30.0}, "/h")
    assert args["timeoutSeconds"] == 30 and args["yieldMs"] > 30_000


def test_the_tool_result_the_model_got_tells_the_exit_status() -> None:
    assert last_tool_result([{"role": "user", "content": "go"}]) is None
    msgs = [{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [{}]},
            {"role": "tool", "content": [{"type": "text", "text": "out\n\n(Command exited with code 2)"}]}]
    assert tool_outcome([{"tool_result": last_tool_result(msgs)}])["exit_code"] == 2
    assert tool_outcome([{"tool_result": "checks passed"}])["exit_code"] == 0
    timed = tool_outcome([{"tool_result": "partial\nCommand timed out after 30 seconds."}])
    assert timed["exit_code"] is None and timed["timed_out"]
    assert tool_outcome([{"tool_result": None}])["exit_code"] is None        # the command never ran


def test_the_rules_copy_adds_the_stand_in_ports_and_ignores_only_the_sandbox_resolver(tmp_path: Path) -> None:
    src = tmp_path / "rules.json"
    src.write_text(json.dumps({"rules": [{"name": "r"}], "analysis": {"ignored_connect_ips": ["10.1.1.1"]}}))
    out = json.loads(openclaw_rules(src, tmp_path / "out.json").read_text())
    assert out["rules"] == [{"name": "r"}]
    assert out["analysis"]["ignored_connect_ips"] == ["10.1.1.1", SANDBOX_RESOLVER]
    assert set(LOOPBACK_PORTS) <= set(out["analysis"]["allowed_loopback_ports"])
    assert SANDBOX_RESOLVER != "127.0.0.1"       # the DNS-tunnel scenario's resolver stays visible
    npmrc = out["analysis"]["credential_consumers"]["~/.npmrc"]
    assert "npm" in npmrc and any(r.startswith("/") and r.endswith("/bin/node") for r in npmrc)
    assert "git" in out["analysis"]["credential_consumers"]["~/.ssh/*"]   # the other defaults kept


def test_the_records_follow_both_the_gateway_and_the_cli() -> None:
    raw = [{"kind": "fork", "tgid": 10, "child_tgid": 11}, {"kind": "exec", "tgid": 12, "ppid": 11},
           {"kind": "exec", "tgid": 21, "ppid": 20}, {"kind": "exec", "tgid": 31, "ppid": 30}]
    assert tree_pids(raw, [10, 20]) == {10, 11, 12, 20, 21}


def _result(sid: str, mode: str, action: str) -> ScenarioResult:
    cat = "malicious" if sid.startswith("atk") else "benign"
    exp = "ALERT" if cat == "malicious" else "IGNORE"
    return ScenarioResult(id=sid, name=sid, category=cat, tactic="t", technique=["T1105"], expected=exp,
                          identity="casa-agent", profile=f"openclaw-{mode}", mode=mode, action=action,
                          valid=True, met=met(cat, exp, action))


def _block() -> str:
    rs = [_result("atk-a", "gateway", "ALERT"), _result("atk-a", "local", "LOG"), _result("dev-b", "gateway", "LOG")]
    s = summarize(rs, key="mode")
    assert s["modes"]["gateway"]["malicious_met"] == 1 and s["modes"]["local"]["malicious_met"] == 0
    meta = {"date": "d", "commit": "c", "rules": "rules.json", "rules_version": "v", "openclaw": "x", "duration_s": 1}
    return render_openclaw_block(rs, s, meta, {"atk-x": "needs root"})


def test_the_openclaw_block_lives_inside_the_attack_section_and_survives_its_refresh() -> None:
    block = _block()
    assert block.startswith(OPENCLAW_BEGIN) and "| atk-a |" in block and "atk-x: needs root" in block
    doc = replace_openclaw_block("# R\n", block)                     # no attack section yet
    assert doc.index(SECTION_BEGIN) < doc.index(OPENCLAW_BEGIN) < doc.index(SECTION_END)
    doc = replace_section(doc, f"{SECTION_BEGIN}\n## Attack suite\nnew totals\n{SECTION_END}\n")
    assert "new totals" in doc and doc.count(OPENCLAW_BEGIN) == 1 and "| atk-a |" in doc
    assert doc.index(OPENCLAW_END) < doc.index(SECTION_END)
    again = replace_openclaw_block(doc, block.replace("atk-x", "atk-y"))
    assert again.count(OPENCLAW_BEGIN) == 1 and "atk-y" in again and "atk-x" not in again
    assert "new totals" in again
