"""The bus-schema-2 kinds (chmod, ptrace, vm_read, send, socket, memfd, setid, capset) and the
flags they set: each true for the attack, false for the look-alike benign action."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest

from analyzer.core import Analyzer
from analyzer.evidence import ref_map
from tests.analyzer.analyzer_sequences import Seq, context_after, hist
from policy import Policy

TREE = {"tree_id": 9, "shard": 9}
S = 10**9


def seq(uid: int = 1000, **common: Any) -> Seq:
    return Seq(uid=uid, common={**TREE, **common})


# ---------------------------------------------------------------- setuid_created

def test_chmod_setting_setuid_or_setgid(core):
    s = seq().exec(1, 201, "/usr/bin/chmod", ["chmod", "4755", "/tmp/.sysbash"])
    s.event("chmod", 1.1, 201, syscall="fchmodat", ret=0, path="/tmp/.sysbash", dirfd=-100, mode=0o104755)
    assert hist(core, s).setuid_created
    g = seq().event("chmod", 1, 201, syscall="chmod", ret=0, path="/tmp/x", dirfd=-100, mode=0o2755)
    assert hist(Analyzer(core.policy), g).setuid_created


@pytest.mark.parametrize("mode, ret", [(0o755, 0), (0o100755, 0), (0o4755, -1)])
def test_chmod_plus_x_or_a_refused_chmod_is_not(core, mode, ret):
    s = seq().exec(1, 201, "/usr/bin/chmod", ["chmod", "+x", "scripts/check.sh"])
    s.event("chmod", 1.1, 201, syscall="fchmodat", ret=ret, path="scripts/check.sh",
            abspath="/srv/p/scripts/check.sh", dirfd=-100, mode=mode)
    assert not hist(core, s).setuid_created


# ---------------------------------------------------------------- foreign_process_read

@pytest.mark.parametrize("path", ["/proc/4242/mem", "/proc/4242/environ", "/proc/4242/maps",
                                  "/proc/4242/task/4243/mem"])
def test_reading_another_process_memory_or_environment(core, path):
    s = seq().exec(1, 201, "/usr/bin/python3", ["python3", "-"])
    s.open(1.1, 201, path, ret=3, target_tgid=4242, target_in_tree=False)
    assert hist(core, s).foreign_process_read


@pytest.mark.parametrize("exe, path, expected", [
    ("/usr/bin/ps", "/proc/4242/environ", False),        # ps eww
    ("/usr/bin/ps", "/proc/4242/mem", True),             # never a lister's read
    ("/tmp/d/ps", "/proc/4242/environ", True),           # a copy named ps
    ("/usr/bin/cat", "/proc/4242/environ", True),
    ("/usr/bin/ps", "/proc/4242/stat", False), ("/usr/bin/cat", "/proc/4242/cmdline", False)])
def test_process_listers_and_status_files(core, exe, path, expected):
    s = seq().exec(1, 201, exe, ["ps", "eww"]).open(1.1, 201, path, ret=3, target_tgid=4242,
                                                    target_in_tree=False)
    assert hist(core, s).foreign_process_read is expected


def test_reading_a_process_of_the_tree_or_a_refused_read_is_not(core):
    s = seq().exec(1, 201, "/usr/bin/cat", ["cat"])
    s.open(1.1, 201, "/proc/202/environ", ret=3, target_tgid=202, target_in_tree=True)
    s.open(1.2, 201, "/proc/1/environ", ret=-13, target_tgid=1, target_in_tree=False)
    assert not hist(core, s).foreign_process_read


@pytest.mark.parametrize("request_, in_tree, ret, expected", [
    (16, False, 0, True),            # PTRACE_ATTACH a foreign process
    (0x4206, False, 0, True),        # PTRACE_SEIZE
    (2, False, 0, True),             # PTRACE_PEEKDATA
    (16, True, 0, False),            # gdb on its own child
    (0, False, 0, False),            # PTRACE_TRACEME
    (16, False, -1, False)])         # refused (yama)
def test_ptrace(core, request_, in_tree, ret, expected):
    s = seq().exec(1, 201, "/usr/bin/gdb", ["gdb", "-p", "4242"])
    s.event("ptrace", 1.1, 201, syscall="ptrace", ret=ret, request=request_, target=4242,
            target_in_tree=in_tree)
    assert hist(core, s).foreign_process_read is expected


def test_process_vm_readv_and_the_evidence_names_the_target(core):
    s = seq().event("vm_read", 1, 201, syscall="process_vm_readv", ret=4096, target=4242,
                    target_in_tree=False)
    assert hist(core, s).foreign_process_read
    (ref,) = core.sessions[1].marks.evidence.refs["history.foreign_process_read"]
    assert ref_map(ref) == {"ts_ns": S, "tgid": 201, "kind": "vm_read", "target": 4242}


def test_without_target_in_tree_a_pid_the_tree_ran_is_not_foreign(core):
    s = seq().exec(1, 202, "/usr/bin/sleep", ["sleep", "9"]).exec(1.1, 201, "/usr/bin/gdb", ["gdb"])
    s.event("ptrace", 1.2, 201, syscall="ptrace", ret=0, request=16, target=202)
    assert not hist(core, s).foreign_process_read
    s.event("ptrace", 1.3, 201, syscall="ptrace", ret=0, request=16, target=1)
    assert hist(Analyzer(core.policy), s).foreign_process_read


# ---------------------------------------------------------------- udp_exfil

def dns(s: Seq, t: float, qhash: int, dest: str = "127.0.0.53", port: int = 53, size: int = 45) -> Seq:
    return s.event("send", t, 201, syscall="sendto", ret=size, family=2, addr=dest, port=port,
                   bytes=size, sock_type=2, messages=1, connected=False, dns_qname_len=20,
                   dns_qname_hash=qhash)


@pytest.mark.parametrize("names, expected", [(20, True), (19, False)])
def test_many_distinct_query_names_to_one_resolver(core, names, expected):
    s = seq()
    for i in range(names):
        dns(s, 1 + i * 0.5, 1000 + i)
    assert hist(core, s).udp_exfil is expected


def test_a_normal_lookup_of_one_name(core):
    s = dns(dns(seq(), 1, 77), 1.01, 77)               # A and AAAA of one name
    s.connect(1.1, 201, "93.184.216.34", 443)
    assert not hist(core, s).udp_exfil


def test_names_spread_over_more_than_the_window_or_over_destinations(core):
    spread = seq()
    for i in range(25):
        dns(spread, 1 + i * 5, 1000 + i)                # 20 names never within 60 s
    assert not hist(core, spread).udp_exfil
    split = seq()
    for i in range(24):
        dns(split, 1 + i * 0.1, 1000 + i, dest=f"127.0.0.{1 + i % 2}")   # 12 per destination
    assert not hist(Analyzer(core.policy), split).udp_exfil


def test_many_bytes_to_one_destination_within_the_window(core):
    s = seq()
    for i in range(5):
        s.event("send", 1 + i, 201, syscall="sendto", ret=1000, family=2, addr="10.0.0.9", port=9999,
                bytes=1000, sock_type=2, messages=1, connected=False)
    assert hist(core, s).udp_exfil
    slow = seq()
    for i in range(5):
        slow.event("send", 1 + i * 80, 201, syscall="sendto", ret=1000, family=2, addr="10.0.0.9",
                   port=9999, bytes=1000, sock_type=2, messages=1, connected=False)
    assert not hist(Analyzer(core.policy), slow).udp_exfil


# ---------------------------------------------------------------- raw_socket, memfd_created

def test_raw_socket_created_or_refused(core):
    s = seq().event("socket", 1, 201, syscall="socket", ret=3, family=2, type=3, protocol=1)
    assert hist(core, s).raw_socket
    refused = seq().event("socket", 1, 201, syscall="socket", ret=-1, family=17, type=3, protocol=768)
    assert not hist(Analyzer(core.policy), refused).raw_socket


def test_memfd_create_and_a_shm_file_look_alike(core):
    s = seq().event("memfd", 1, 201, syscall="memfd_create", ret=4, name="payload", flags=1)
    assert hist(core, s).memfd_created
    assert core.sessions[1].marks.evidence.refs["history.memfd_created"][0][3] == "memfd:payload"
    shm = seq().open(1, 201, "/dev/shm/sem.x", 0x241)
    assert not hist(Analyzer(core.policy), shm).memfd_created


# ---------------------------------------------------------------- privilege_gained by calls

def cap(core: Analyzer, s: Seq):
    return context_after(core, s).capability


def test_setuid_zero_from_a_user_process(core):
    s = seq().exec(1, 201, "/tmp/.py", ["python3"], euid=65534, prev_euid=65534, cap_eff=1 << 7,
                   prev_cap_eff=1 << 7)
    assert not cap(core, s).privilege_gained
    s.event("setid", 1.1, 201, syscall="setuid", ret=0, ids=[0], euid=0, egid=65534)
    assert cap(Analyzer(core.policy), s).privilege_gained


@pytest.mark.parametrize("euid_before, ids, euid_after, ret", [
    (0, [0], 0, 0),                  # a root process setting what it has
    (0, [65534, 65534, 0], 65534, 0),   # dropping privileges
    (1000, [0], 1000, -1)])          # refused
def test_setid_that_raises_nothing(core, euid_before, ids, euid_after, ret):
    s = seq(uid=euid_before).exec(1, 201, "/usr/sbin/sshd", ["sshd"], euid=euid_before, prev_euid=euid_before)
    s.event("setid", 1.1, 201, syscall="setresuid", ret=ret, ids=ids, euid=euid_after, egid=0)
    assert not cap(core, s).privilege_gained


def test_capset_beyond_what_the_exec_gave(core):
    s = seq().exec(1, 201, "/usr/bin/python3", ["python3"], cap_eff=0, prev_cap_eff=0)
    s.event("capset", 1.1, 201, syscall="capset", ret=0, effective=1 << 21, permitted=1 << 21,
            inheritable=0, pid=0)
    assert cap(core, s).privilege_gained
    full = (1 << 41) - 1
    root = seq(uid=0).exec(1, 201, "/usr/bin/python3", ["python3"], cap_eff=full, prev_cap_eff=full)
    root.event("capset", 1.1, 201, syscall="capset", ret=0, effective=1 << 21, permitted=full,
               inheritable=0, pid=0)
    assert not cap(Analyzer(core.policy), root).privilege_gained


# ---------------------------------------------------------------- burst_interpreter_exec

def wrapper_seq(n: int, argv: list[str], gap: float = 0.5) -> Seq:
    """The runtime's wrapper (/bin/bash -c, role wrapper) running ``argv`` n times."""
    s = seq()
    s.exec(1, 300, "/usr/bin/node", ["node", "openclaw"], role="agent")
    s.exec(1.1, 301, "/bin/bash", ["/bin/bash", "-c", "for ..."], parent=300, role="wrapper")
    for i in range(n):
        s.exec(2 + i * gap, 310 + i, "/usr/bin/" + argv[0], argv, parent=301)
    return s


def test_m07_shells_under_the_wrapper(core):
    h = hist(core, wrapper_seq(6, ["sh", "-c", "echo step 1"]))
    assert h.burst_interpreter_exec and h.burst_exec


def test_t10_python_c_five_times(core):
    assert hist(core, wrapper_seq(5, ["python3", "-c", "print(1)"])).burst_interpreter_exec


@pytest.mark.parametrize("argv", [["grep", "-c", "x", "f"], ["gcc", "-c", "x.c"]])
def test_ordinary_commands_and_compilers_under_a_shell(core, argv):
    h = hist(core, wrapper_seq(8, argv))
    assert h.burst_exec and not h.burst_interpreter_exec


def test_make_recipe_shells_and_installed_tools_do_not_count(core):
    s = seq().exec(1, 301, "/bin/bash", ["/bin/bash", "-c", "make"], role="wrapper")
    s.exec(1.1, 302, "/usr/bin/make", ["make"], parent=301)
    for i in range(6):
        s.exec(2 + i * 0.2, 310 + i, "/bin/sh", ["/bin/sh", "-c", "cc -c x.c"], parent=302)
    assert not hist(core, s).burst_interpreter_exec
    npm = wrapper_seq(6, ["node", "/usr/bin/npm", "run", "build"])
    assert not hist(Analyzer(core.policy), npm).burst_interpreter_exec


def test_interpreters_started_by_the_runtime_itself_do_not_count(core):
    s = seq().exec(1, 300, "/usr/bin/node", ["node", "openclaw"], role="agent")
    for i in range(6):
        s.exec(2 + i * 0.2, 310 + i, "/usr/bin/python3", ["python3", "-c", "1"], parent=300)
    assert not hist(core, s).burst_interpreter_exec


def test_slow_interpreters_are_not_a_burst(core):
    assert not hist(core, wrapper_seq(6, ["sh", "-c", "x"], gap=3)).burst_interpreter_exec


# ---------------------------------------------------------------- credential consumers by path

def with_consumers(policy: Policy, consumers: dict[str, tuple[str, ...]]) -> Policy:
    a = dataclasses.replace(policy.analysis, credential_consumers=tuple(consumers.items()))
    return dataclasses.replace(policy, analysis=a)


NVM_NODE = "/root/.nvm/versions/node/v22.1.0/bin/node"


def test_a_consumer_named_by_absolute_path(bundled):
    core = Analyzer(with_consumers(bundled, {"~/.npmrc": ("npm", NVM_NODE)}))
    s = seq(uid=0).exec(1, 201, NVM_NODE, ["node", "npm-cli.js"]).open(1.1, 201, "/root/.npmrc")
    assert not hist(core, s).credential_access
    other = seq(uid=0).exec(1, 201, "/root/.nvm/versions/node/v18.0.0/bin/node", ["node"])
    other.open(1.1, 201, "/root/.npmrc")
    assert hist(Analyzer(core.policy), other).credential_access


def test_public_keys_are_not_credentials_by_default(core):
    s = seq(uid=0).exec(1, 201, "/usr/bin/cat", ["cat", "/root/.ssh/id_deploy.pub"])
    s.open(1.1, 201, "/root/.ssh/id_deploy.pub")
    assert not hist(core, s).credential_access
    s.open(1.2, 201, "/root/.ssh/id_deploy")
    assert hist(Analyzer(core.policy), s).credential_access


def test_global_git_config_is_not_persistence(core):
    s = seq(uid=0).exec(1, 201, "/usr/bin/git", ["git", "config", "--global", "user.name", "Dev"])
    s.open(1.1, 201, "/root/.gitconfig.lock", 0xC1).event(
        "rename", 1.2, 201, syscall="rename", ret=0, path="/root/.gitconfig.lock", new_path="/root/.gitconfig")
    assert not hist(core, s).persistence_write


def test_a_script_parent_of_any_name_counts(core):
    """A ``#!`` script runs as its interpreter under its own name: a program from outside the
    system directories starting shells counts as their shell parent, whatever it is called."""
    s = wrapper_seq(0, ["true"])
    s.exec(1.5, 320, "/tmp/d/loop", ["/tmp/d/loop"], parent=301)
    for i in range(6):
        s.exec(2 + i * 0.2, 330 + i, "/bin/sh", ["sh", "-c", f"echo {i}"], parent=320)
    assert hist(core, s).burst_interpreter_exec


def test_script_children_are_known_by_their_interpreter_identity(core):
    """``./step`` (a ``#!/bin/sh`` script, any name) carries /bin/sh's (dev, ino): an interpreter
    start; an installed ``#!`` tool (in a system directory) is not."""
    st = os.stat("/bin/sh")
    ident = {"ino": st.st_ino, "dev": st.st_dev}
    s = wrapper_seq(0, ["true"])
    for i in range(6):
        s.exec(2 + i * 0.2, 330 + i, "/tmp/d/step", ["./step"], parent=301, **ident)
    assert hist(core, s).burst_interpreter_exec
    tool = wrapper_seq(0, ["true"])
    for i in range(6):
        tool.exec(2 + i * 0.2, 330 + i, "/usr/bin/step", ["step"], parent=301, **ident)
    assert not hist(Analyzer(core.policy), tool).burst_interpreter_exec
    elf = wrapper_seq(0, ["true"])
    for i in range(6):
        elf.exec(2 + i * 0.2, 330 + i, "/tmp/d/step", ["./step"], parent=301, ino=12345, dev=1)
    assert not hist(Analyzer(core.policy), elf).burst_interpreter_exec
