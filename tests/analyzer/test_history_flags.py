"""history.* flags (docs/original.md §8.3): windows, order, exact paths, noise, window eviction."""

from __future__ import annotations

import dataclasses

import pytest

from analyzer.core import Analyzer
from analyzer.history_flags import burst, burst_ignorable_connect, burst_ignorable_open
from tests.analyzer.analyzer_sequences import Seq, hist, in_mode
from policy import Policy

SH = "/bin/sh"


# ---------------------------------------------------------------- connect_then_exec, sensitive_then_*

# Each case: the events, the flag, and its value after them.
ORDER_CASES = {
    "connect_then_exec-is-ordered-without-window": (
        lambda s: s.connect(0, 200, "93.184.216.34", 443).exec(500, 201, "/bin/echo"), "connect_then_exec", True),
    "exec-before-connect-is-not-connect_then_exec": (
        lambda s: s.exec(0, 201, "/bin/echo").connect(1, 200, "93.184.216.34", 443), "connect_then_exec", False),
    "sensitive_then_network-is-order-insensitive": (
        lambda s: s.connect(1, 200, "93.184.216.34", 443).open(5, 200, "/etc/shadow"), "sensitive_then_network",
        True),
    "non-sensitive-open-then-network": (
        lambda s: s.open(1, 200, "/etc/os-release").connect(2, 200, "93.184.216.34", 443), "sensitive_then_network",
        False),
    "sensitive-paths-are-case-sensitive-and-untrimmed-inside": (
        lambda s: s.open(1, 200, "/ROOT/secret").connect(2, 200, "1.1.1.1", 443), "sensitive_then_network", False),
    "sensitive_then_execve-window-and-either-order": (
        lambda s: s.exec(1, 201, "/bin/ls").open(11, 200, "/root/a"), "sensitive_then_execve", True),
    "sensitive_then_execve-outside-window": (
        lambda s: s.open(1, 200, "/root/a").exec(12, 201, "/bin/ls"), "sensitive_then_execve", False),
}


@pytest.mark.parametrize("build, flag, expected", ORDER_CASES.values(), ids=list(ORDER_CASES))
def test_order_and_window(core, seq, build, flag, expected):
    build(seq)
    assert getattr(hist(core, seq), flag) is expected


# ---------------------------------------------------------------- sensitive_then_*

@pytest.mark.parametrize("gap_s, expected", [(10, True), (10.000000001, False), (0, True)])
def test_sensitive_then_network_window_boundary(core, seq, gap_s, expected):
    seq.open(1, 200, "/root/.netrc").connect(1 + gap_s, 200, "93.184.216.34", 443)
    assert hist(core, seq).sensitive_then_network is expected


def test_sensitive_prefix_vs_pattern(bundled: Policy):
    # prefixes are "starts with", patterns "contains": /x/root/y is not under /root/.
    core = Analyzer(bundled)
    s = Seq().open(1, 200, "/x/root/y").connect(2, 200, "1.1.1.1", 443)
    assert not hist(core, s).sensitive_then_network
    core = Analyzer(bundled)
    s = Seq().open(1, 200, "/home/u/.config/openclaw/x.json").connect(2, 200, "1.1.1.1", 443)
    assert hist(core, s).sensitive_then_network


def test_eval_policy_fake_fs_is_sensitive(eval_policy):
    core = Analyzer(eval_policy)
    s = Seq().open(1, 200, "/srv/casa-eval/fake_fs/casefiles/alpha/briefing.txt").connect(
        2, 201, "127.0.0.1", 18000)
    assert hist(core, s).sensitive_then_network


# ---------------------------------------------------------------- bursts

def test_burst_exec_at_and_below_threshold(bundled):
    four, five = Seq(), Seq()
    for i in range(4):
        four.exec(1 + i, 300 + i, "/usr/bin/python3")
        five.exec(1 + i, 300 + i, "/usr/bin/python3")
    five.exec(5, 310, "/usr/bin/python3")
    assert not hist(Analyzer(bundled), four).burst_exec
    assert hist(Analyzer(bundled), five).burst_exec


def test_burst_window_boundary():
    assert burst([0, 1, 2, 3, 10 * 10**9], 5, 10 * 10**9)
    assert not burst([0, 1, 2, 3, 10 * 10**9 + 1], 5, 10 * 10**9)
    assert burst([], 1, 0)                   # threshold <= 1: always true (as the original)
    assert not burst([0, 1], 3, 10)


def test_burst_connect_ignores_loopback_and_private(core, seq):
    for i, addr in enumerate(["127.0.0.1", "10.1.2.3", "192.168.0.9", "172.20.0.1", "169.254.1.1",
                              "::1"]):
        seq.connect(1 + i * 0.1, 200, addr, 80)
    assert not hist(core, seq).burst_connect


def test_burst_connect_public_hosts(core, seq):
    for i in range(5):
        seq.connect(1 + i, 200, f"93.184.216.{i + 1}", 80 + i)
    assert hist(core, seq).burst_connect


def test_burst_ignorable_predicates():
    assert burst_ignorable_open("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert burst_ignorable_open("/proc/self/status") and burst_ignorable_open("/sys")
    assert burst_ignorable_open("/home/someone/.bashrc") and burst_ignorable_open("/dev/null")
    assert burst_ignorable_open("/a/b/node_modules/x/package.json")
    assert not burst_ignorable_open("/tmp/openclaw-eval/a.txt")
    assert not burst_ignorable_open("/usr/lib/python3/foo.py")
    assert burst_ignorable_connect("127.0.0.53", 53)
    assert not burst_ignorable_connect("not-an-ip", 80)
    assert not burst_ignorable_connect("2606:4700::1111", 443)


def test_burst_open_counts_only_kept_opens(bundled):
    noisy, real = Seq(), Seq()
    for i in range(12):
        noisy.open(1 + i * 0.1, 200, "/usr/lib/libx.so.1")
        real.open(1 + i * 0.1, 200, f"/tmp/w/{i}.txt")
    assert not hist(Analyzer(bundled), noisy).burst_open
    assert hist(Analyzer(bundled), real).burst_open


# ---------------------------------------------------------------- write_then_exec_same_path

def test_write_then_exec_same_path_exact(core, seq):
    seq.write(1, 200, "/tmp/x.sh").exec(2, 201, "/tmp/x.sh")
    assert hist(core, seq).write_then_exec_same_path


def test_exec_before_write_does_not_count(core, seq):
    seq.exec(1, 201, "/tmp/x.sh").write(2, 200, "/tmp/x.sh")
    assert not hist(core, seq).write_then_exec_same_path


def test_read_only_open_then_exec_does_not_count(core, seq):
    seq.open(1, 200, "/tmp/x.sh", 0).exec(2, 201, "/tmp/x.sh")
    assert not hist(core, seq).write_then_exec_same_path


def test_bash_script_is_the_same_path_only_in_indexed_mode(core, seq):
    """The original compared exec paths only (``bash /tmp/x.sh`` runs /bin/bash); the indexed
    mode counts the script operand as what runs (docs/rules.md)."""
    seq.write(1, 200, "/tmp/x.sh").exec(2, 201, "/bin/bash", ["bash", "/tmp/x.sh"])
    assert hist(core, seq).write_then_exec_same_path
    original = Analyzer(in_mode(core.policy, "original"))
    assert not hist(original, seq).write_then_exec_same_path


def test_relative_and_absolute_paths_differ(core, seq):
    seq.write(1, 200, "x.sh").exec(2, 201, "/tmp/x.sh")
    assert not hist(core, seq).write_then_exec_same_path


@pytest.mark.parametrize("flags", [1, 2, 0x40, 0x200, 0x400])
def test_each_write_intent_flag(core, seq, flags):
    seq.open(1, 200, "/tmp/x.sh", flags).exec(2, 201, "/tmp/x.sh")
    assert hist(core, seq).write_then_exec_same_path


# ---------------------------------------------------------------- opened_deleted_path

def test_opened_deleted_path(core, seq):
    seq.open(1, 200, "/tmp/gone (deleted)")
    assert hist(core, seq).opened_deleted_path


def test_deleted_mark_needs_the_space(core, seq):
    seq.open(1, 200, "/tmp/gone(deleted)")
    assert not hist(core, seq).opened_deleted_path


# ---------------------------------------------------------------- window

def test_history_turns_false_when_events_leave_the_window(original):
    """history_mode "original": the last recent_event_limit events only."""
    small = Analyzer(dataclasses.replace(
        original, analysis=dataclasses.replace(original.analysis, recent_event_limit=3)))
    s = Seq().connect(1, 200, "1.1.1.1", 443).exec(2, 201, "/bin/ls")
    assert hist(small, s).connect_then_exec
    for i in range(3):
        small.handle(("sessionizer.event", Seq().open(3 + i, 200, f"/tmp/{i}").events[0]), 0)
    assert not small.sessions[1].ctx.history.connect_then_exec
    assert len(small.sessions[1].state.recent) == 3


def test_indexed_history_is_sticky_and_not_pushed_out(bundled):
    """history_mode "indexed": unrelated events never take a flag back (nor hide a pair)."""
    small = Analyzer(dataclasses.replace(
        bundled, analysis=dataclasses.replace(bundled.analysis, recent_event_limit=3)))
    s = Seq().connect(1, 200, "1.1.1.1", 443)
    for i in range(100):
        s.open(1 + i * 0.001, 200, f"/tmp/{i}")
    s.exec(2, 201, "/bin/ls")
    assert hist(small, s).connect_then_exec
    assert len(small.sessions[1].state.recent) == 3        # the snapshot window is still 3
