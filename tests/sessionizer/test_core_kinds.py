"""The collector's new kinds (docs/bus.md §5.10-§5.22) through the sessionizer: tree gate, session
attribution, no noise filter unless a path filter applies (then ``hidden``), targets."""

from __future__ import annotations

from typing import Any

import pytest

from sessionizer.core import Sessionizer

from tests.sessionizer.synthetic_events import GATEWAY, HOMES, Events, events_of, feed, lifecycle_of

NODE = "/usr/bin/node"
OC = "/opt/oc/lib/node_modules/openclaw"
HOME = HOMES[1000]

pytestmark = pytest.mark.usefixtures("schema2_kinds")


@pytest.fixture
def gw(core: Sessionizer, ev: Events) -> Sessionizer:
    feed(core, [ev.root(GATEWAY, 1, "openclaw-gateway", exe=NODE, reason="exec",
                        argv=["node", f"{OC}/openclaw.mjs", "gateway"]),
                ev.exec(3000, GATEWAY, "/usr/bin/python3", ["python3", "x.py"], ts=1)])
    return core


def every_kind(ev: Events, tgid: int, ppid: int, ts: float) -> list[dict[str, Any]]:
    return [
        ev.other("chmod", tgid, ppid, ts, path="/tmp/d/p", dirfd=-100, mode=0o4755, flags=0),
        ev.other("unlink", tgid, ppid, ts, path="/var/log/auth.log", dirfd=-100, flags=0),
        ev.other("rename", tgid, ppid, ts, path="/tmp/d/a", new_path="/tmp/d/b", dirfd=-100,
                 new_dirfd=-100, flags=0),
        ev.other("truncate", tgid, ppid, ts, path=f"{HOME}/.bash_history", length=0),
        ev.other("memfd", tgid, ppid, ts, name="payload", flags=1),
        ev.other("ptrace", tgid, ppid, ts, request=16, target=1),
        ev.other("vm_read", tgid, ppid, ts, target=GATEWAY),
        ev.other("send", tgid, ppid, ts, family=2, addr="10.0.0.2", port=53, bytes=60, sock_type=2,
                 messages=1, connected=False),
        ev.other("bind", tgid, ppid, ts, family=2, addr="0.0.0.0", port=4444),
        ev.other("listen", tgid, ppid, ts, family=2, addr="0.0.0.0", port=4444, backlog=1),
        ev.other("socket", tgid, ppid, ts, family=17, type=3, protocol=768),
        ev.other("setid", tgid, ppid, ts, ids=[0, -1, -1], euid=0, egid=1000),
        ev.other("capset", tgid, ppid, ts, effective=1 << 21, permitted=1 << 21, inheritable=0, pid=0),
    ]


def test_every_new_kind_of_a_tool_is_published_in_its_session(gw, ev):
    out = feed(gw, every_kind(ev, 3000, GATEWAY, 2))
    evs = events_of(out)
    assert [e["kind"] for e in evs] == [e["kind"] for e in every_kind(ev, 0, 0, 0)]
    assert len({e["session_id"] for e in evs}) == 1
    assert not any("hidden" in e or "role" in e for e in evs)
    ptrace, vm_read = (e for e in evs if e["kind"] in ("ptrace", "vm_read"))
    assert (ptrace["target_in_tree"], vm_read["target_in_tree"]) == (False, True)
    assert not gw.dropped


def test_new_kinds_outside_every_tree_are_dropped(core, ev):
    assert feed(core, every_kind(ev, 50, 40, 1)) == []
    assert core.dropped["untracked"] == len(every_kind(ev, 0, 0, 0))


def test_write_like_kinds_of_the_runtime_in_its_state_are_hidden_elsewhere_published(gw, ev):
    state = f"{HOME}/.openclaw/agents/main/sessions"
    out = feed(gw, [
        ev.other("rename", GATEWAY, 1, 3, path=f"{state}/s.tmp", new_path=f"{state}/s.jsonl",
                 dirfd=-100, new_dirfd=-100, flags=0),
        ev.other("rename", GATEWAY, 1, 3.1, path=f"{state}/s.tmp", new_path="/tmp/d/p.sh",
                 dirfd=-100, new_dirfd=-100, flags=0),                # out of its state: shown
        ev.other("unlink", GATEWAY, 1, 3.2, path="/var/tmp/etilqs_1", dirfd=-100, flags=0),
        ev.other("chmod", GATEWAY, 1, 3.3, path=f"{OC}/p.sh", dirfd=-100, mode=0o755, flags=0),
        ev.other("chmod", GATEWAY, 1, 3.4, path="/tmp/d/p.sh", dirfd=-100, mode=0o755, flags=0),
        ev.other("truncate", GATEWAY, 1, 3.5, path=f"{HOME}/.bashrc", length=0),   # rc: shown
        ev.other("chmod", 3000, GATEWAY, 3.6, path=f"{OC}/p.sh", dirfd=-100, mode=0o755, flags=0),  # a tool
    ])
    assert [(e["kind"], e.get("hidden"), e.get("role")) for e in events_of(out)] == [
        ("rename", "runtime_noise", "agent"), ("rename", None, "agent"),
        ("unlink", "runtime_noise", "agent"), ("chmod", "runtime_noise", "agent"),
        ("chmod", None, "agent"), ("truncate", None, "agent"), ("chmod", None, None)]


def test_relative_paths_of_write_like_kinds_use_the_kernels_abspath(gw, ev):
    out = feed(gw, [
        ev.other("chmod", GATEWAY, 1, 3, path="p.sh", abspath=f"{OC}/p.sh", dirfd=-100, mode=0o755, flags=0),
        ev.other("chmod", GATEWAY, 1, 3.1, path="p.sh", abspath="", dirfd=-100, mode=0o755, flags=0),
        ev.other("rename", GATEWAY, 1, 3.2, path="a", abspath=f"{OC}/a", new_path="b",
                 new_abspath="/tmp/d/b", dirfd=-100, new_dirfd=-100, flags=0),
    ])
    assert [e.get("hidden") for e in events_of(out)] == ["runtime_noise", None, None]
    assert gw.stats()["unresolved_paths"] == 1


def test_the_runtimes_own_rare_kinds_open_a_session_its_sends_are_background(core, ev):
    feed(core, [ev.root(GATEWAY, 1, "openclaw-gateway", exe=NODE, reason="exec",
                        argv=["node", f"{OC}/openclaw.mjs", "gateway"])])
    out = feed(core, [ev.other("send", GATEWAY, 1, 0.5, family=2, addr="10.0.0.2", port=53, bytes=40,
                                     sock_type=2, messages=1, connected=False)])
    assert out == [] and core.dropped["runtime_dns"] == 1  # its own name lookup, like a connect's
    out = feed(core, [ev.other("send", GATEWAY, 1, 1, family=2, addr="10.0.0.2", port=4500, bytes=40,
                                     sock_type=2, messages=1, connected=False)])
    assert out == []                                       # held like its connects
    out = feed(core, [ev.other("ptrace", GATEWAY, 1, 10, request=16, target=1)])
    (opened,) = lifecycle_of(out)
    assert [(e["kind"], e["role"], e["target_in_tree"]) for e in events_of(out)] == [("ptrace", "agent", False)]
    assert core.dropped["runtime_background"] == 1         # the send aged out before it
