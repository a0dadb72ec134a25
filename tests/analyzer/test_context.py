"""Every declared CEL field exists in the context (rules naming one evaluate), routing by shard,
and the evidence decisions carry."""

from __future__ import annotations

import dataclasses

import pytest

from analyzer.context import Context
from analyzer.core import Analyzer
from analyzer.evidence import MAX_REFS, Evidence
from tests.analyzer.analyzer_sequences import Seq, decisions, lifecycle, run_events
from policy import FEATURES, Policy, parse_policy


def test_every_declared_field_is_in_the_context_with_its_type():
    m = Context().as_map()
    assert set(m) == set(FEATURES)
    for group, fields in FEATURES.items():
        assert set(m[group]) == set(fields), group
        for name, cel_type in fields.items():
            assert type(m[group][name]) is {"bool": bool, "int": int}[cel_type], (group, name)


INET = {"type": "inet", "family": 2, "addr": "127.0.0.1", "port": 4444}
PIPE = {"type": "pipe", "ino": 5}
TTY = {"type": "tty"}


def _steps(s: Seq, field: str) -> None:
    """The shortest sequence of this project's semantics that makes ``field`` true (uid 0, tree 4)."""
    ev, x = s.event, s.exec
    {"execution.suspicious_path_exec": lambda: x(1, 201, "/tmp/d/x"),
     "execution.deep_chain": lambda: [x(1 + i / 10, 201 + i, "/bin/true", parent=200 + i if i else 100)
                                      for i in range(7)],
     "execution.shell_in_chain": lambda: x(1, 201, "/bin/sh", ["sh", "-c", "x"]),
     "execution.network_tool_in_chain": lambda: x(1, 201, "/usr/bin/curl"),
     "execution.interpreter_in_chain": lambda: x(1, 201, "/usr/bin/python3"),
     "execution.container_runtime_in_chain": lambda: x(1, 201, "/usr/bin/docker"),
     "execution.memfd_or_deleted_exec": lambda: x(1, 201, "/proc/self/fd/3", exe="memfd:x (deleted)"),
     "execution.reverse_shell": lambda: x(1, 201, "/bin/bash", ["bash", "-i"], stdio=[INET, INET, INET]),
     "execution.pipe_to_shell": lambda: x(1, 201, "/usr/bin/curl", stdio=[TTY, PIPE, TTY]).exec(
         1.1, 202, "/bin/sh", ["sh"], stdio=[PIPE, TTY, TTY]),
     "execution.loader_hijack": lambda: x(1, 201, "/bin/ls", ld_env={"LD_PRELOAD": "/tmp/x.so"}),
     "execution.preload_injection": lambda: x(1, 201, "/bin/ls", ld_env={"LD_PRELOAD": "/tmp/x.so"}),
     "execution.masquerade": lambda: x(1, 201, "/tmp/d/sshd"),
     "execution.hidden_path_exec": lambda: x(1, 201, "/tmp/.d/x"),
     "execution.unresolved_exec": lambda: x(1, 201, "./x", abspath=""),
     "capability.has_dangerous_caps": lambda: x(1, 201, "/bin/true", cap_eff=1 << 21),
     "capability.dangerous_count": lambda: x(1, 201, "/bin/true", cap_eff=1 << 21),
     "capability.seccomp_disabled": lambda: x(1, 201, "/bin/true", seccomp=0),
     "capability.gained_dangerous_caps": lambda: x(1, 201, "/bin/true", cap_eff=1 << 21, prev_cap_eff=0),
     "capability.privilege_gained": lambda: x(1, 201, "/tmp/su", euid=0, prev_euid=1000),
     "history.connect_then_exec": lambda: s.connect(1, 200, "1.1.1.1", 443).exec(2, 201, "/bin/true"),
     "history.sensitive_then_network": lambda: s.open(1, 200, "/etc/shadow").connect(2, 200, "1.1.1.1", 443),
     "history.sensitive_then_execve": lambda: s.open(1, 200, "/etc/shadow").exec(2, 201, "/bin/true"),
     "history.burst_open": lambda: [s.open(1 + i / 10, 200, f"/srv/f{i}") for i in range(10)],
     "history.burst_connect": lambda: [s.connect(1 + i / 10, 200, f"1.1.1.{i}", 443) for i in range(5)],
     "history.burst_exec": lambda: [x(1 + i / 10, 201 + i, "/bin/true") for i in range(5)],
     "history.write_then_exec_same_path": lambda: s.write(1, 200, "/srv/x").exec(2, 201, "/srv/x"),
     "history.discovery_burst": lambda: [x(1 + i / 10, 201 + i, f"/usr/bin/{n}", [n])
                                         for i, n in enumerate(("id", "uname", "ip", "ps", "env"))],
     "history.bulk_replace": lambda: [s.write(1 + i / 10, 200, f"/srv/f{i}.locked").event(
         "unlink", 1.05 + i / 10, 200, path=f"/srv/f{i}", syscall="unlink", ret=0, dirfd=-100, flags=0)
                                      for i in range(5)],
     "history.inline_network_spawn": lambda: x(1, 201, "/usr/bin/python3", ["python3", "-c", "..."]).connect(
         1.1, 201, "1.1.1.1", 443).exec(1.2, 202, "/usr/bin/id", ["id"], parent=201),
     "history.opened_deleted_path": lambda: s.open(1, 200, "/tmp/a (deleted)"),
     "history.overflow": lambda: None,
     "history.credential_access": lambda: s.open(1, 200, "/root/.aws/credentials"),
     "history.credential_then_network": lambda: s.open(1, 200, "/root/.netrc").connect(2, 200, "1.1.1.1", 443),
     "history.persistence_write": lambda: s.write(1, 200, "/etc/cron.d/x"),
     "history.setuid_created": lambda: ev("chmod", 1, 200, ret=0, path="/tmp/x", mode=0o4755),
     "history.foreign_process_read": lambda: ev("vm_read", 1, 200, ret=1, target=1, target_in_tree=False),
     "history.log_tampering": lambda: ev("unlink", 1, 200, ret=0, path="/var/log/auth.log"),
     "history.security_tool_discovery": lambda: x(1, 201, "/usr/bin/pgrep", ["pgrep", "falco"]),
     "history.udp_exfil": lambda: ev("send", 1, 200, ret=5000, addr="10.0.0.1", port=53, bytes=5000),
     "history.raw_socket": lambda: ev("socket", 1, 200, ret=3, family=17, type=3, protocol=0),
     "history.bind_shell": lambda: x(1, 201, "/bin/zsh").event("listen", 2, 201, ret=0, addr="0.0.0.0", port=1),
     "history.shell_network": lambda: x(1, 201, "/bin/bash").connect(2, 201, "1.1.1.1", 80),
     "history.memfd_created": lambda: ev("memfd", 1, 200, ret=3, name="x", flags=0),
     "history.written_then_interpreted": lambda: s.write(1, 200, "/srv/x.py").exec(
         2, 201, "/usr/bin/python3", ["python3", "/srv/x.py"]),
     "history.burst_interpreter_exec": lambda: [x(1 + i / 10, 201 + i, "/bin/sh", ["sh", "-c", "x"],
                                                  comm="bash") for i in range(5)],
     }[field]()


@pytest.mark.parametrize("field", [f"{g}.{f}" for g, fields in FEATURES.items() for f in fields])
def test_every_declared_field_is_computed(bundled: Policy, field: str):
    """No declared field is a placeholder: each one turns true for its pattern, with evidence."""
    policy = bundled
    if field == "history.overflow":
        policy = dataclasses.replace(bundled, analysis=dataclasses.replace(bundled.analysis, history_index_cap=1))
    core = Analyzer(policy)
    s = Seq(uid=0, common={"tree_id": 4, "shard": 4})
    _steps(s, field)
    if field == "history.overflow":
        s.write(1, 200, "/srv/a").write(2, 200, "/srv/b")
    run_events(core, s.events)
    group, _, name = field.partition(".")
    value = core.sessions[1].ctx.as_map()[group][name]
    assert value is True or (type(value) is int and value > 0)
    assert core.sessions[1].marks.evidence.refs.get(field), "no evidence"


def rules_naming_every_field() -> bytes:
    rules = ",".join(
        f'{{"name": "r_{g}_{f}", "expr": "{g}.{f}{" >= 1" if t == "int" else ""}", "weight": 1, "enabled": true}}'
        for g, fields in FEATURES.items() for f, t in fields.items())
    return (b'{"analysis": {"lineage_max_depth": 6}, "thresholds": {"log": 1, "alert": 2}, "rules": ['
            + rules.encode() + b"]}")


def test_a_rule_naming_any_declared_field_evaluates_without_error():
    policy = parse_policy(rules_naming_every_field())
    assert not [w for w in policy.warnings if "never sets" in w]
    core = Analyzer(policy)
    s = Seq().write(1, 201, "/tmp/p").exec(2, 202, "/tmp/p")
    ds = decisions(run_events(core, s.events))
    assert core.rules.eval_errors == 0
    fired = {r["name"] for d in ds for r in d["triggered_rules"]}
    assert "r_history_write_then_exec_same_path" in fired and "r_history_udp_exfil" not in fired


# ---------------------------------------------------------------- routing

@pytest.mark.parametrize("n", [2, 3])
def test_instances_own_messages_by_shard(bundled: Policy, n: int):
    """Two sessions of one tree (different ids, same shard) land on one instance, which sees
    the first session's write when the second execs."""
    cores = [Analyzer(bundled, i, n) for i in range(n)]
    tree = {"tree_id": 11, "shard": 11}
    first = Seq(session_id=4, common=tree).write(1, 201, "/tmp/d/p")
    second = Seq(session_id=5, common=tree).exec(9, 202, "/tmp/d/p")
    outs = [run_events(c, first.events + second.events) for c in cores]
    owner = 11 % n
    assert [bool(o) for o in outs] == [i == owner for i in range(n)]
    assert decisions(outs[owner])[-1]["action"] == "ALERT"
    lc = [c.handle(("sessionizer.session", lifecycle(5, "closed", shard=11)), 0) for c in cores]
    assert [bool(x) for x in lc] == [i == owner for i in range(n)]


def test_messages_without_shard_are_routed_by_session_id(bundled: Policy):
    cores = [Analyzer(bundled, i, 2) for i in range(2)]
    s = Seq(session_id=3).write(1, 201, "/tmp/d/p")
    assert [bool(run_events(c, s.events)) for c in cores] == [False, True]


# ---------------------------------------------------------------- evidence

def test_decisions_carry_evidence_only_for_the_fields_of_their_rules(core: Analyzer):
    s = Seq().connect(0.5, 201, "93.184.216.34", 443).write(1, 201, "/tmp/d/p").exec(2, 202, "/tmp/d/p")
    (d,) = decisions(run_events(core, s.events))
    names = {r["name"] for r in d["triggered_rules"]}
    assert "download_then_suspicious_exec" in names
    named = set(core.rule_fields.of(r for r in core.policy.rules if r.name in names))
    assert {"history.write_then_exec_same_path", "execution.suspicious_path_exec",
            "history.connect_then_exec"} <= set(d["evidence"]) <= named
    assert all(d["context"][k.split(".")[0]][k.split(".")[1]] for k in d["evidence"])
    conn, exe = d["evidence"]["history.connect_then_exec"]
    assert conn == {"ts_ns": 500_000_000, "tgid": 201, "kind": "connect", "addr": "93.184.216.34:443"}
    assert exe["path"] == "/tmp/d/p" and exe["kind"] == "exec"


def test_evidence_is_bounded_and_kept_from_the_first_completion():
    ev = Evidence()
    ev.add("history.burst_exec", [(i, 1, "exec", f"/x{i}") for i in range(9)])
    ev.add("history.burst_exec", [(99, 1, "exec", "/later")])
    refs = ev.refs["history.burst_exec"]
    assert len(refs) == MAX_REFS and refs[0][0] == 0 and refs[-1][0] == 8
    assert Evidence.load(ev.dump()).refs == ev.refs


def test_non_utf8_evidence_paths_go_back_to_bytes(core: Analyzer):
    s = Seq().write(1, 201, "/tmp/d/x").exec(2, 202, "/tmp/d/x")
    for ev in s.events:
        ev["path"] = b"/tmp/d/\xff\xfe"
        if "exe" in ev:
            ev["exe"] = ev["path"]
    (d,) = decisions(run_events(core, s.events))
    write, _ = d["evidence"]["history.write_then_exec_same_path"]
    assert write["path"] == b"/tmp/d/\xff\xfe"
