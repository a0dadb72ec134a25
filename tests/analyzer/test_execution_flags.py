"""execution.* and capability.* flags (casa-original.md §8.4, §8.5)."""

from __future__ import annotations

import dataclasses

from analyzer.capability_flags import dangerous_mask
from analyzer.core import Analyzer
from analyzer_sequences import Seq, context_after

CAP_SYS_ADMIN, CAP_NET_RAW, CAP_CHOWN = 1 << 21, 1 << 13, 1 << 0


def ex(core: Analyzer, seq: Seq):
    return context_after(core, seq).execution


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
