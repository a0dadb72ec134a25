"""Compile the policy's CEL rules once and evaluate them, with results cached by context value.

cel-python costs about a millisecond per rule set even compiled, so rules are never run per raw
event: the analyzer evaluates only when a session's derived context changed, and identical
contexts (a handful of booleans and ints) share one cached result across sessions.

All programs use ``CompiledRunner``. cel-python 0.5 cannot build a CompiledRunner once an
InterpretedRunner exists in the process, so this module never builds the interpreted kind.
A result counts as a match only when it is exactly boolean true; any evaluation error (a missing
key, a wrong type) is no match, and is counted.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import celpy
from celpy import celtypes

from analyzer.context import Context
from policy import Policy, Rule, PolicyError

__all__ = ["CompiledRules", "CACHE_MAX_ENTRIES"]

CACHE_MAX_ENTRIES = 4096

logging.getLogger("celpy").setLevel(logging.CRITICAL)   # eval errors are counted, not logged


@dataclass(frozen=True, slots=True)
class _Program:
    rule: Rule
    runner: Any


class CompiledRules:
    """The enabled rules of one Policy, ready to evaluate."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        env = celpy.Environment(runner_class=celpy.CompiledRunner)
        programs = []
        for rule in policy.enabled_rules:
            try:
                programs.append(_Program(rule, env.program(env.compile(rule.expr))))
            except Exception as exc:  # noqa: BLE001 - cel-python/lark raise assorted types
                raise PolicyError(policy.source, [f"{policy.source}: rule '{rule.name}' expr does not "
                                                  f"compile: {type(exc).__name__}: {exc}"]) from None
        self.programs = tuple(programs)
        self.uses_session_id = any("session_id" in r.expr for r in policy.enabled_rules)
        self.cache: OrderedDict[tuple[Any, ...], tuple[Rule, ...]] = OrderedDict()
        self.evaluations = 0
        self.cache_hits = 0
        self.eval_errors = 0

    def matched(self, ctx: Context, session_id: int) -> tuple[Rule, ...]:
        """Rules (file order) whose expression is exactly true for ``ctx``."""
        key = ctx.rule_key() + ((session_id,) if self.uses_session_id else ())
        hit = self.cache.get(key)
        if hit is not None:
            self.cache_hits += 1
            self.cache.move_to_end(key)
            return hit
        result = self._evaluate(ctx, session_id)
        self.cache[key] = result
        if len(self.cache) > CACHE_MAX_ENTRIES:
            self.cache.popitem(last=False)
        return result

    def _evaluate(self, ctx: Context, session_id: int) -> tuple[Rule, ...]:
        self.evaluations += 1
        m = ctx.as_map()
        try:
            activation = {"session_id": celtypes.IntType(session_id),
                          **{group: celpy.json_to_cel(values) for group, values in m.items()}}
        except (ValueError, TypeError):       # e.g. a value outside CEL's int64: nothing can match
            self.eval_errors += len(self.programs)
            return ()
        out = []
        for prog in self.programs:
            try:
                value = prog.runner.evaluate(activation)
            except Exception:  # noqa: BLE001 - any evaluation error is "no match" (docs/original.md §9.2)
                self.eval_errors += 1
                continue
            if isinstance(value, celtypes.BoolType) and bool(value):
                out.append(prog.rule)
            elif not isinstance(value, celtypes.BoolType):
                self.eval_errors += isinstance(value, Exception)
        return tuple(out)
