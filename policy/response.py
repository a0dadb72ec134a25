"""rules.json ``response``: what the responder does when a session ALERTs (opt-in).

The document may carry ``{"response": {"on_alert": ACTION, "dry_run": false}}`` at the top level
and the same object on any rule. ACTION is one of :data:`ACTIONS`; the default is ``none`` (no
``response`` key anywhere = CASA only records). A rule's own ``response`` replaces the top-level
one for that rule.

When several rules of an alerting session disagree, the **strongest** action wins, in the order
of :data:`ACTIONS` (``none`` < ``kill_process`` < ``freeze_session`` < ``kill_session``): a
frozen session can do nothing more, while ``kill_process`` leaves the rest of the tree running,
so freezing is stronger than killing one process, and killing the whole tree is strongest.
Among the rules that chose the winning action, the response is a dry run only if *every* one of
them asks for a dry run: a rule that really wants the action is not overruled by a rehearsal.

An unknown action, or a ``dry_run`` that is not a boolean, is an error: ``casa rules check``
names it, and a reload keeps the old rules in force.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from policy.rule_schema import Report, type_name

__all__ = ["ACTIONS", "NO_RESPONSE", "Response", "Chosen", "parse_response", "choose"]

ACTIONS = ("none", "kill_process", "freeze_session", "kill_session")   # weakest first
RESPONSE_KEYS = frozenset({"on_alert", "dry_run"})


@dataclass(frozen=True, slots=True)
class Response:
    """One response setting (top level or one rule's)."""

    on_alert: str = "none"
    dry_run: bool = False

    @property
    def strength(self) -> int:
        return ACTIONS.index(self.on_alert)


NO_RESPONSE = Response()


@dataclass(frozen=True, slots=True)
class Chosen:
    """The response chosen for one ALERT decision, and the rules that chose it."""

    action: str
    dry_run: bool
    rules: tuple[str, ...]

    def as_map(self) -> dict[str, Any]:
        return {"action": self.action, "dry_run": self.dry_run, "rules": list(self.rules)}


def parse_response(raw: Any, where: str, line: int | None, rep: Report) -> Response | None:
    """Validate one ``response`` object; None (and errors in ``rep``) when it is unusable.

    ``where`` names it in messages (``response``, ``rule 'x': response``)."""
    if not isinstance(raw, dict):
        rep.error(line, f"{where} must be an object like {{\"on_alert\": \"kill_session\"}}, "
                        f"not {type_name(raw)}")
        return None
    for key in sorted(set(raw) - RESPONSE_KEYS):
        rep.warn(line, f"{where}: unknown field '{key}' is ignored")
    action = raw.get("on_alert", "none")
    dry_run = raw.get("dry_run", False)
    ok = True
    if not isinstance(action, str) or action not in ACTIONS:
        shown = repr(action) if isinstance(action, str) else type_name(action)
        rep.error(line, f"{where}.on_alert must be one of {', '.join(ACTIONS)}, not {shown}")
        ok = False
    if not isinstance(dry_run, bool):
        rep.error(line, f"{where}.dry_run must be true or false, not {type_name(dry_run)}")
        ok = False
    return Response(action, dry_run) if ok else None


def choose(default: Response, rules: Iterable[tuple[str, Response | None]]) -> Chosen:
    """The response for an alert whose session fired ``rules`` (name, the rule's own response
    or None for the top-level ``default``): the strongest action, a dry run only if all of its
    choosers ask for one. No rule at all (cannot happen for an ALERT) falls back to ``default``."""
    best: Response | None = None
    names: list[str] = []
    dry = True
    for name, own in rules:
        r = own if own is not None else default
        if best is None or r.strength > best.strength:
            best, names, dry = r, [name], r.dry_run
        elif r.strength == best.strength:
            names.append(name)
            dry = dry and r.dry_run
    if best is None:
        return Chosen(default.on_alert, default.dry_run, ())
    return Chosen(best.on_alert, dry if best.on_alert != "none" else False, tuple(names))
