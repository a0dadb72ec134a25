"""execution.* and capability.* flags (docs/original.md §8.4, §8.5)."""

from __future__ import annotations

import dataclasses

from analyzer.capability_flags import dangerous_mask
from analyzer.core import Analyzer
from tests.analyzer.analyzer_sequences import Seq, context_after, ex, lifecycle

CAP_SYS_ADMIN, CAP_NET_RAW, CAP_CHOWN = 1 << 21, 1 << 13, 1 << 0


def test_suspicious_path_exec(core, seq):
    seq.exec(1, 201, "/tmp/openclaw-eval/a.sh")
    assert ex(core, seq).suspicious_path_exec


def test_proc_self_fd_exec_is_suspicious(core, seq):
    seq.exec(1, 201, "/proc/self/fd/3", exe="/usr/bin/true")
    assert ex(core, seq).suspicious_path_exec


def test_plain_exec_flags_are_false(core, seq):
    seq.exec(1, 201, "/usr/bin/ls")
    e = ex(core, seq)
    assert not (e.suspicious_path_exec or e.memfd_or_deleted_exec or e.shell_in_chain
                or e.deep_chain or e.network_tool_in_chain or e.container_runtime_in_chain)


def test_memfd_exec_fires_through_exe(core, seq):
    """A real fileless exec: the path is an fd path, the exe names the memfd."""
    seq.exec(1, 201, "/proc/self/fd/4", exe="memfd:payload (deleted)")
    e = ex(core, seq)
    assert e.memfd_or_deleted_exec and e.suspicious_path_exec


def test_execveat_empty_path_memfd(core, seq):
    seq.exec(1, 201, "", exe="memfd:x")
    assert ex(core, seq).memfd_or_deleted_exec


def test_deleted_binary_exec(core, seq):
    seq.exec(1, 201, "/usr/local/bin/tool", exe="/usr/local/bin/tool (deleted)")
    assert ex(core, seq).memfd_or_deleted_exec


def test_shell_in_chain_from_session_ancestors(core, seq):
    seq.exec(1, 200, "/bin/bash", ["bash", "-c", "curl x"]).exec(2, 201, "/usr/bin/curl", parent=200)
    e = ex(core, seq)
    assert e.shell_in_chain and e.network_tool_in_chain and e.interpreter_in_chain


def test_gateway_ancestor_never_seen_contributes_no_name(core, seq):
    """The gateway (node) is in every lineage but not in the session: interpreter stays false."""
    seq.exec(1, 201, "/usr/bin/ls")
    assert not ex(core, seq).interpreter_in_chain


def test_flags_are_sticky_across_processes(core, seq):
    seq.exec(1, 201, "/tmp/a").exec(2, 202, "/usr/bin/ls").exit(3, 201)
    assert ex(core, seq).suspicious_path_exec


def test_container_runtime_in_chain(core, seq):
    seq.exec(1, 201, "/usr/bin/docker", ["docker", "ps"])
    assert ex(core, seq).container_runtime_in_chain


def test_deep_chain_threshold(bundled):
    def chain(n: int) -> Seq:
        s = Seq()
        parent = 100
        for i in range(n):
            s.exec(1 + i, 200 + i, "/usr/bin/env", parent=parent)
            parent = 200 + i
        return s
    # n execs below the gateway give lineage depth n (gateway is the root node)
    assert not ex(Analyzer(bundled), chain(4)).deep_chain
    assert ex(Analyzer(bundled), chain(5)).deep_chain


def test_lineage_is_capped_by_lineage_max_depth(bundled):
    a = dataclasses.replace(bundled.analysis, lineage_max_depth=3)
    core = Analyzer(dataclasses.replace(bundled, analysis=a))
    s = Seq()
    parent = 100
    for i in range(8):
        s.exec(1 + i, 200 + i, "/usr/bin/env", parent=parent)
        parent = 200 + i
    assert not ex(core, s).deep_chain          # depth capped at 3 < 5


def test_capabilities_dangerous_without_seccomp(core, seq):
    seq.exec(1, 201, "/usr/bin/ls", cap_eff=CAP_SYS_ADMIN | CAP_NET_RAW | CAP_CHOWN, seccomp=0)
    c = context_after(core, seq).capability
    assert c.has_dangerous_caps and c.dangerous_count == 2 and c.seccomp_disabled


def test_capabilities_unknown_snapshot_contributes_nothing(core, seq):
    seq.exec(1, 201, "/usr/bin/ls", cap_eff=None, seccomp=0)
    c = context_after(core, seq).capability
    assert not c.has_dangerous_caps and not c.seccomp_disabled and c.unknown


def test_capability_count_is_a_max(core, seq):
    seq.exec(1, 201, "/a", cap_eff=CAP_SYS_ADMIN | CAP_NET_RAW, seccomp=2)
    seq.exec(2, 202, "/b", cap_eff=CAP_NET_RAW, seccomp=0)
    c = context_after(core, seq).capability
    assert c.dangerous_count == 2 and c.seccomp_disabled and c.has_dangerous_caps


def test_capability_only_on_exec(core, seq):
    seq.exec(1, 201, "/a", cap_eff=0, seccomp=2).open(2, 201, "/x")
    assert not context_after(core, seq).capability.has_dangerous_caps


def test_dangerous_mask_names():
    assert dangerous_mask((" cap_sys_admin ", "CAP_NOPE")) == CAP_SYS_ADMIN


# ---------------------------------------------------------------- only the session's tool processes

def test_role_execs_and_exits_contribute_no_flags_and_no_lineage_names(core, seq):
    """The CLI's own self re-exec (role agent) and the runtime's wrapper (role wrapper)."""
    seq.exec(1, 150, "/usr/bin/node", ["node", "/opt/openclaw/openclaw.mjs", "agent"], role="agent")
    seq.exec(2, 200, "/bin/bash", ["bash", "-c", "ls"], parent=150, role="wrapper")
    seq.exec(3, 201, "/usr/bin/ls", ["ls"], parent=200)
    seq.exit(4, 201).exit(5, 200, role="wrapper").exit(6, 150, role="agent")
    e = ex(core, seq)
    assert not (e.interpreter_in_chain or e.shell_in_chain)


def test_the_agent_root_names_no_lineage_node(core):
    """Without roles (older recordings): the CLI root's own image is the runtime, not a tool."""
    s = Seq(common={"root": 150})
    s.exec(1, 150, "/usr/bin/node", ["node", "openclaw", "agent", "-m", "hi"], parent=50)  # the root
    s.exec(2, 201, "/usr/bin/ls", ["ls"], parent=150).exit(3, 201).exit(4, 150)
    assert not ex(core, s).interpreter_in_chain


def test_a_root_reimaged_in_place_names_its_own_node(core):
    """`casa-agent -c 'curl ...'`: bash runs its last command in place; the sessionizer marks
    the root's new image ``reimaged``, and curl is then a network tool in its own chain."""
    s = Seq(common={"root": 150})
    s.exec(1, 150, "/usr/bin/curl", ["curl", "-d", "@/tmp/x", "http://x"], parent=50, reimaged=True)
    assert ex(core, s).network_tool_in_chain


def test_the_root_exec_in_place_of_a_memfd_still_counts(core):
    s = Seq(common={"root": 150}).exec(1, 150, "/proc/self/fd/3", ["payload"], parent=50,
                                       exe="memfd:payload (deleted)")
    assert ex(core, s).memfd_or_deleted_exec


def test_a_forked_subshell_exit_never_sets_shell_in_chain(core, seq):
    """``( cd x && make )``: the subshell is a fork of the hidden wrapper; its exit carries the
    wrapper's comm, bash, but no exec of it was seen in the session."""
    seq.comms[205] = "bash"
    seq.parents[205] = 200
    seq.exec(1, 206, "/usr/bin/make", ["make"], parent=205).exit(2, 206).exit(3, 205)
    assert not ex(core, seq).shell_in_chain


def test_a_real_shell_in_the_chain_still_counts(core, seq):
    seq.exec(1, 205, "/bin/bash", ["bash", "./build.sh"]).exec(2, 206, "/usr/bin/make", parent=205)
    assert ex(core, seq).shell_in_chain


# ---------------------------------------------------------------- capabilities gained (issue 13)

CAP_FULL = (1 << 41) - 1


def caps(core: Analyzer, seq: Seq, root_cap_eff=None):
    core.handle(("sessionizer.session", lifecycle(seq.session_id, "opened", root_cap_eff=root_cap_eff)), 0)
    return context_after(core, seq).capability


def test_root_agent_doing_ordinary_work_gains_nothing(core):
    s = Seq(uid=0).exec(1, 201, "/usr/bin/ls", cap_eff=CAP_FULL, seccomp=0, euid=0, prev_euid=0,
                        prev_cap_eff=CAP_FULL)
    c = caps(core, s, root_cap_eff=CAP_FULL)
    assert c.has_dangerous_caps and not c.gained_dangerous_caps and not c.privilege_gained


def test_dangerous_caps_the_root_did_not_hold(core):
    s = Seq().exec(1, 201, "/usr/bin/ping", cap_eff=CAP_NET_RAW, seccomp=0, euid=1000, prev_euid=1000,
                   prev_cap_eff=0)
    c = caps(core, s, root_cap_eff=0)
    assert c.gained_dangerous_caps and c.privilege_gained        # file capabilities


def test_gained_falls_back_to_prev_cap_eff_when_the_root_is_unknown(core):
    s = Seq().exec(1, 201, "/tmp/x", cap_eff=CAP_SYS_ADMIN, seccomp=0, prev_cap_eff=0)
    assert caps(core, s).gained_dangerous_caps
    unknown = Seq(session_id=2).exec(1, 201, "/tmp/x", cap_eff=CAP_SYS_ADMIN, seccomp=0)
    assert not caps(Analyzer(core.policy), unknown).gained_dangerous_caps


def test_setuid_root_exec_is_privilege_gained(core):
    s = Seq().exec(1, 201, "/tmp/suid-sh", cap_eff=0, seccomp=0, euid=0, prev_euid=1000, prev_cap_eff=0)
    assert caps(core, s, root_cap_eff=0).privilege_gained


def test_dropping_privilege_is_not_gaining_it(core):
    s = Seq(uid=0).exec(1, 201, "/usr/sbin/runuser", cap_eff=0, seccomp=0, euid=1000, prev_euid=0,
                        prev_cap_eff=CAP_FULL)
    c = caps(core, s, root_cap_eff=CAP_FULL)
    assert not c.privilege_gained and not c.gained_dangerous_caps


def test_a_fileless_exec_is_never_the_runtime_image_whatever_its_role(core):
    s = Seq(common={"root": 150}).exec(1, 150, "/proc/self/fd/3", ["node"], parent=50, role="agent",
                                       exe="memfd:x (deleted)")
    assert ex(core, s).memfd_or_deleted_exec
