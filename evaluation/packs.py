"""The rule packs an evaluation column runs, composed at run time from the shipped files, so there
is no second copy of a pack to keep in step: ``default`` (rules.json with the evaluation's analysis
values) and ``original`` (config/rules.eval.json as it is, the parity column)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evaluation.network import machine_resolvers
from evaluation.toolchain import CHECKOUT

__all__ = ["PACKS", "EVAL_RULES", "DEFAULT_RULES", "default_pack_rules", "pack_rules", "eval_rules"]

EVAL_RULES = CHECKOUT / "config" / "rules.eval.json"
DEFAULT_RULES = CHECKOUT / "rules.json"
PACKS = ("default", "original")


def default_pack_rules(default: Path = DEFAULT_RULES, evaluation: Path = EVAL_RULES) -> dict[str, Any]:
    """rules.json's rules and thresholds with the evaluation's analysis values laid over its own.

    The 30 cases need the evaluation's setting, not other rules: the fake casefiles under
    /srv/casa-eval/fake_fs/ are the sensitive files M01-M03 and M10 read, and the stand-in internet
    servers listen on loopback ports that must count as network. Every ``analysis`` key of
    config/rules.eval.json is taken except ``history_mode``: that file pins the original's
    window for parity, while this column measures the default pack as it ships (indexed history).
    """
    rules = json.loads(default.read_text())
    overlay = {k: v for k, v in json.loads(evaluation.read_text()).get("analysis", {}).items()
               if k != "history_mode"}
    rules["analysis"] = {**rules.get("analysis", {}), **overlay}
    return rules


def pack_rules(pack: str) -> dict[str, Any]:
    """The rules a column runs: ``default`` (default_pack_rules) or ``original`` (rules.eval.json as is)."""
    if pack == "default":
        return default_pack_rules()
    if pack == "original":
        return json.loads(EVAL_RULES.read_text())
    raise ValueError(f"unknown rule pack {pack!r}: expected one of {', '.join(PACKS)}")


def eval_rules(dest: Path, ignore_resolvers: bool = True, pack: str = "original",
               source: Path | None = None) -> Path:
    """The column's rules (pack_rules; or the file ``source``, as the attack suite passes), with
    this machine's DNS resolvers in ``ignored_connect_ips``.

    The OpenClaw gateway looks names up by itself now and then (its model catalog host, offline).
    Where the resolver is on loopback (127.0.0.53, as on the original's machines) CASA drops that
    connect; where it is not (this machine: 10.255.255.53), the gateway's own DNS query lands in
    the session, and a case that reads a sensitive file within 10 s of it scores
    sensitive_file_then_network whatever the agent did (T03 was flagged that way). Ignoring the
    resolvers restores the original's setting; no rule changes.
    """
    rules = json.loads(source.read_text()) if source is not None else pack_rules(pack)
    if ignore_resolvers:
        analysis = rules.setdefault("analysis", {})
        analysis["ignored_connect_ips"] = list(analysis.get("ignored_connect_ips", [])) + machine_resolvers()
    dest.write_text(json.dumps(rules, indent=2))
    dest.chmod(0o644)
    return dest
