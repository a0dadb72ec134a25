"""Each usual OpenClaw install layout's process shapes are recognised by the bundled profiles
(config/casa.json): a global npm install (npm's prefix /usr or /usr/local), nvm, a project-local
install; the gateway (`openclaw gateway run`, the daemon's `node .../dist/index.js gateway`) and
the CLI (`openclaw agent -m ...`). ``openclaw`` is a ``#!/usr/bin/env node`` script, so what runs
is script -> env (PATH search) -> node with the script as argv[1].

The match stays anchored: a script's lone basename (``index.js``) never makes a root, only the
package's own path (``/openclaw/dist/index.js``) or the ``openclaw`` entry script's names."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from agents.profiles import DEFAULT_CONFIG_PATH, ProfileError, load_profiles
from sessionizer.core import Sessionizer

from tests.sessionizer.synthetic_events import S, T0, Events, events_of, lifecycle_of


@dataclass(frozen=True)
class Layout:
    name: str
    bin: str          # the `openclaw` on PATH (a symlink to the package's openclaw.mjs)
    pkg: str          # the package directory
    node: str         # the node binary env finds


LAYOUTS = [
    Layout("npm-global-usr", "/usr/bin/openclaw", "/usr/lib/node_modules/openclaw", "/usr/bin/node"),
    Layout("npm-global-usr-local", "/usr/local/bin/openclaw", "/usr/local/lib/node_modules/openclaw",
           "/usr/local/bin/node"),
    Layout("nvm", "/home/alice/.nvm/versions/node/v22.12.0/bin/openclaw",
           "/home/alice/.nvm/versions/node/v22.12.0/lib/node_modules/openclaw",
           "/home/alice/.nvm/versions/node/v22.12.0/bin/node"),
    Layout("project-local", "/home/alice/proj/node_modules/.bin/openclaw", "/home/alice/proj/node_modules/openclaw",
           "/usr/bin/node"),
]
IDS = [lay.name for lay in LAYOUTS]


def gateway_shapes(lay: Layout) -> list[tuple[str, str, list[str]]]:
    """(comm, exe, argv) of the gateway's root-making execs, as the collector matches them."""
    return [
        ("node", lay.node, ["node", lay.bin, "gateway", "run"]),                        # env -> node
        ("node", lay.node, ["node", lay.bin, "gateway", "--port", "18789"]),
        ("node", lay.node, [lay.node, "--disable-warning=ExperimentalWarning", lay.bin, "gateway", "run"]),  # respawn
        ("node", lay.node, ["node", f"{lay.pkg}/openclaw.mjs", "gateway", "run"]),       # run directly
        ("node", lay.node, [lay.node, "--max-old-space-size=2048", f"{lay.pkg}/dist/index.js", "gateway",
                            "--port", "18789"]),                                         # the daemon's unit
        ("node", lay.node, [lay.node, f"{lay.pkg}/dist/entry.js", "gateway", "--port", "18789"]),
        ("openclaw-gatewa", lay.node, ["openclaw-gateway"]),                              # found running at start
    ]


def cli_shapes(lay: Layout) -> list[tuple[str, str, list[str]]]:
    return [
        ("node", lay.node, ["node", lay.bin, "agent", "-m", "hi"]),
        ("node", lay.node, ["node", lay.bin, "agent", "--agent", "main", "--message", "hi", "--local"]),
        ("node", lay.node, [lay.node, "--disable-warning=ExperimentalWarning", lay.bin, "agent", "-m", "hi"]),
        ("node", lay.node, ["node", f"{lay.pkg}/openclaw.mjs", "agent", "-m", "hi"]),
        ("node", lay.node, [lay.node, f"{lay.pkg}/dist/index.js", "agent", "-m", "hi"]),
        ("node", lay.node, ["node", lay.bin, "agent", "--local", "--message-file", "/home/alice/prompt.txt"]),
    ]


@pytest.fixture(scope="module")
def profiles():
    return load_profiles(DEFAULT_CONFIG_PATH)


def matched(profiles, comm: str, exe: str, argv: list[str]) -> list[str]:
    return [p.name for p in profiles if p.matches(comm[:15], exe, argv)]


@pytest.mark.parametrize("lay", LAYOUTS, ids=IDS)
def test_every_gateway_shape_is_the_gateway_profile(profiles, lay: Layout) -> None:
    for comm, exe, argv in gateway_shapes(lay):
        assert matched(profiles, comm, exe, argv) == ["openclaw-gateway"], argv


@pytest.mark.parametrize("lay", LAYOUTS, ids=IDS)
def test_every_cli_shape_is_the_cli_profile(profiles, lay: Layout) -> None:
    for comm, exe, argv in cli_shapes(lay):
        assert matched(profiles, comm, exe, argv) == ["openclaw-cli"], argv


@pytest.mark.parametrize("lay", LAYOUTS, ids=IDS)
def test_the_script_and_env_hops_wait_for_node(profiles, lay: Layout) -> None:
    """The script's own exec and env's are no match: the root is the node they become."""
    assert matched(profiles, "openclaw", lay.bin, ["openclaw", "gateway", "run"]) == []
    assert matched(profiles, "env", "/usr/bin/env", ["/usr/bin/env", "node", lay.bin, "gateway", "run"]) == []
    assert matched(profiles, "openclaw", lay.bin, ["openclaw", "agent", "-m", "hi"]) == []


@pytest.mark.parametrize("argv", [
    ["node", "/tmp/x/index.js", "gateway"],                          # a lone basename is not enough
    ["node", "/srv/app/dist/index.js", "gateway", "run"],            # another package's dist
    ["node", "/srv/notopenclaw/dist/index.js", "gateway"],
    ["node", "/usr/lib/node_modules/openclaw/dist/index.js"],        # neither gateway nor agent
    ["node", "/usr/lib/node_modules/openclaw/dist/index.js", "agent"],   # agent without a message
    ["node", "/usr/lib/node_modules/npm/bin/npm-cli.js", "install", "-g", "openclaw"],
    ["node", "--require=/usr/lib/node_modules/openclaw/dist/index.js", "server.js", "gateway"],  # an option
])
def test_other_node_programs_are_not_agents(profiles, argv: list[str]) -> None:
    assert matched(profiles, "node", "/usr/bin/node", argv) == []


@pytest.mark.parametrize("suffix", ["index.js", "/index.js", "/dist/index.js", "openclaw/dist/index.js",
                                    "/openclaw//index.js"])
def test_a_suffix_must_be_an_anchored_path(suffix: str) -> None:
    bad = {"profiles": [{"name": "p", "kind": "runtime",
                         "match": [{"exe_basename": ["node"], "argv_suffix_any": [suffix]}]}]}
    with pytest.raises(ProfileError, match="anchored path suffix"):
        load_profiles(data=bad)


# ---------------------------------------------------------------- through the sessionizer

def _exec_chain(ev: Events, lay: Layout, tgid: int, args: list[str], ts: float) -> list[dict]:
    """A shell runs ``openclaw ARGS``: the script's exec, env's failed PATH tries, node's exec."""
    return [ev.exec(tgid, 1, lay.bin, ["openclaw", *args], ts=ts, comm="bash"),
            ev.exec(tgid, 1, "/usr/local/sbin/node", ["node", lay.bin, *args], ts=ts + 0.01, ret=-2, comm="env"),
            ev.exec(tgid, 1, lay.node, ["node", lay.bin, *args], ts=ts + 0.02, comm="env")]


@pytest.mark.parametrize("lay", LAYOUTS, ids=IDS)
def test_the_gateway_chain_makes_one_root_and_its_tools_a_session(core: Sessionizer, ev: Events,
                                                                  lay: Layout) -> None:
    out = []
    for e in _exec_chain(ev, lay, 3000, ["gateway", "run"], 0):
        out += core.handle(e, e["ts_ns"])
    assert [(r.tgid, r.profile) for r in core.tracker.roots.values()] == [(3000, "openclaw-gateway")]
    # the runtime-noise anchor: the package (global, nvm) or the project's node_modules (local)
    want = "/home/alice/proj/node_modules" if lay.name == "project-local" else lay.pkg
    assert core.tracker.roots[3000].install_dir == want
    for e in [ev.fork(3000, 1, 3001, ts=2), ev.exec(3001, 3000, "/bin/bash", ["/bin/bash", "-c", "x"], ts=2),
              ev.exec(3002, 3001, "/usr/bin/curl", ["curl", "http://127.0.0.1/"], ts=2.1)]:
        out += core.handle(e, e["ts_ns"])
    assert [m["profile"] for m in lifecycle_of(out) if m["state"] == "opened"] == ["openclaw-gateway"]
    assert any(e.get("path") == "/usr/bin/curl" for e in events_of(out))


@pytest.mark.parametrize("lay", LAYOUTS, ids=IDS)
def test_the_cli_chain_opens_an_invocation_session(core: Sessionizer, ev: Events, lay: Layout) -> None:
    out = []
    for e in _exec_chain(ev, lay, 4000, ["agent", "-m", "hi"], 0) + \
            [ev.exec(4001, 4000, "/usr/bin/id", ["id"], ts=1), ev.exit(4001, 4000, ts=1.1),
             ev.exit(4000, 1, ts=2)]:
        out += core.handle(e, e["ts_ns"])
    out += core.tick(T0 + 10 * S)
    states = [(m["profile"], m["state"]) for m in lifecycle_of(out)]
    assert states[0] == ("openclaw-cli", "opened") and ("openclaw-cli", "closed") in states
    assert [r.profile for r in core.tracker.roots.values()] in ([], ["openclaw-cli"])
    assert any(e.get("path") == "/usr/bin/id" for e in events_of(out))
