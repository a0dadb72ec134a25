"""The executed file is what runs: in "indexed" mode a shell or interpreter's script operand
counts for write->exec and the path flags as if it had been exec'd itself (docs/rules.md)."""

from __future__ import annotations

import pytest

from analyzer.core import Analyzer
from tests.analyzer.analyzer_sequences import Seq, context_after, in_mode

TREE = {"tree_id": 5, "shard": 5}
W = 0x241


def seq() -> Seq:
    return Seq(uid=1000, common=TREE)


@pytest.mark.parametrize("argv", [["sh", "/tmp/d/p.sh"], ["bash", "-e", "/tmp/d/p.sh"],
                                  ["python3", "-u", "/tmp/d/p.sh", "arg"]])
def test_written_script_run_through_its_interpreter_is_write_then_exec(core, argv):
    s = seq().write(1, 200, "/tmp/d/p.sh").exec(2, 201, "/usr/bin/" + argv[0], argv)
    ctx = context_after(core, s)
    assert ctx.history.write_then_exec_same_path and ctx.execution.suspicious_path_exec
    write, exec_ = core.sessions[1].marks.evidence.refs["history.write_then_exec_same_path"]
    assert (write[3], exec_[3]) == ("/tmp/d/p.sh", "/usr/bin/" + argv[0])


def test_the_same_as_running_the_file_itself(core):
    direct = context_after(core, seq().write(1, 200, "/tmp/d/p.sh").exec(2, 201, "/tmp/d/p.sh"))
    via_sh = context_after(Analyzer(core.policy),
                           seq().write(1, 200, "/tmp/d/p.sh").exec(2, 201, "/bin/sh", ["sh", "/tmp/d/p.sh"]))
    for name in ("write_then_exec_same_path",):
        assert getattr(direct.history, name) and getattr(via_sh.history, name)
    assert direct.execution.suspicious_path_exec and via_sh.execution.suspicious_path_exec


def test_relative_operand_counts_when_the_interpreter_opens_it(core):
    s = seq().write(1, 200, "p.sh", abspath="/tmp/d/.cache/p.sh")
    s.exec(2, 201, "/bin/sh", ["sh", "p.sh"])
    assert not context_after(core, s).history.write_then_exec_same_path     # not opened yet
    s.open(2.01, 201, "p.sh", 0, abspath="/tmp/d/.cache/p.sh")
    ctx = context_after(Analyzer(core.policy), s)
    assert ctx.history.write_then_exec_same_path and ctx.history.written_then_interpreted
    assert ctx.execution.hidden_path_exec and ctx.execution.suspicious_path_exec


@pytest.mark.parametrize("argv", [["sh", "/tmp/d/ps"], ["bash", "/home/u/bin/sshd"]])
def test_a_script_named_like_a_system_binary_outside_them_masquerades(core, argv):
    assert context_after(core, seq().exec(1, 201, "/bin/" + argv[0], argv)).execution.masquerade


@pytest.mark.parametrize("argv", [["sh", "/srv/project/scripts/check.sh"], ["python3", "-c", "print(1)"],
                                  ["python3", "-m", "pytest", "/tmp/d/tests"], ["bash", "-c", "/tmp/d/x"],
                                  ["sh", "/usr/bin/ps"]])
def test_look_alikes(core, argv):
    ctx = context_after(core, seq().exec(1, 201, "/usr/bin/" + argv[0], argv))
    assert not (ctx.execution.suspicious_path_exec or ctx.execution.hidden_path_exec
                or ctx.execution.masquerade or ctx.history.write_then_exec_same_path)


def test_original_mode_compares_exec_paths_only(core):
    original = Analyzer(in_mode(core.policy, "original"))
    s = seq().write(1, 200, "/tmp/d/p.sh").exec(2, 201, "/bin/sh", ["sh", "/tmp/d/p.sh"])
    ctx = context_after(original, s)
    assert not ctx.history.write_then_exec_same_path and not ctx.execution.suspicious_path_exec
    assert ctx.history.written_then_interpreted         # beyond the original: computed in both
