"""Access to other processes (ptrace, process_vm_readv/writev, /proc/<pid>/{mem,environ,maps}),
memfd_create, and privilege changes (set*id, capset): real processes under a real collector, the
exact bus events (docs/bus.md §5.14-§5.16, §5.21-§5.22).
"""

from __future__ import annotations


import pytest

from tests.collector.live import SIGNALS, live_fixture

pytestmark = pytest.mark.root


live = live_fixture("privilege")


def test_ptrace_process_vm_and_proc_opens_of_another_process(live):
    pid, f = live.workload(SIGNALS, "foreign", live.fresh())
    target = f["target"]
    assert live.own(pid, "vm_read") == [
        {"syscall": "process_vm_readv", "ret": f["vm_readv"], "target": target},
        {"syscall": "process_vm_writev", "ret": f["vm_writev"], "target": target},
    ]
    assert f["vm_readv"] == 16 and f["vm_writev"] == 16
    assert live.own(pid, "ptrace") == [
        {"syscall": "ptrace", "ret": 0, "request": 16, "target": target},      # PTRACE_ATTACH
        {"syscall": "ptrace", "ret": 0, "request": 2, "target": target},       # PTRACE_PEEKDATA
        {"syscall": "ptrace", "ret": 0, "request": 17, "target": target},      # PTRACE_DETACH
    ]
    proc = [(e["path"], e.get("abspath"), e["ret"] >= 0) for e in live.tree(pid, "open")
            if f"/proc/{target}" in (e.get("abspath") or e["path"])]
    assert proc == [(f"/proc/{target}/environ", None, True), (f"/proc/{target}/maps", None, True),
                    (f"/proc/{target}/mem", None, True), (f"/proc/{target}", None, True),
                    ("environ", f"/proc/{target}/environ", True)]


def test_memfd_create(live):
    pid, f = live.workload(SIGNALS, "memfd", live.fresh(), "stage\xe9-2")
    assert live.own(pid, "memfd") == [
        {"syscall": "memfd_create", "ret": f["fd"], "name": "stage\xe9-2", "flags": f["flags"]}]


def test_set_id_calls_report_the_ids_asked_and_the_euid_after(live):
    pid, f = live.workload(SIGNALS, "setids", live.fresh())
    assert live.own(pid, "setid") == [
        {"syscall": "setresgid", "ret": 0, "ids": [-1, 65534, -1], "euid": 0, "egid": 65534},
        {"syscall": "setregid", "ret": 0, "ids": [-1, 0], "euid": 0, "egid": 0},
        {"syscall": "setgid", "ret": 0, "ids": [0], "euid": 0, "egid": 0},
        {"syscall": "setresuid", "ret": 0, "ids": [-1, 65534, -1], "euid": 65534, "egid": 0},
        {"syscall": "setreuid", "ret": 0, "ids": [-1, 0], "euid": 0, "egid": 0},
        {"syscall": "setuid", "ret": 0, "ids": [65534], "euid": 65534, "egid": 0},
        {"syscall": "setuid", "ret": -1, "ids": [0], "euid": 65534, "egid": 0},     # EPERM
    ]


def test_capset_reports_the_masks_asked_for(live):
    pid, f = live.workload(SIGNALS, "capsets", live.fresh())
    assert (f["drop"], f["raise"]) == (0, -1)
    assert live.own(pid, "capset") == [
        {"syscall": "capset", "ret": 0, "effective": f["keep"], "permitted": f["keep"],
         "inheritable": 0, "pid": 0},
        {"syscall": "capset", "ret": -1, "effective": f["admin"], "permitted": f["admin"],
         "inheritable": 0, "pid": 0},
    ]
