"""rules.json: the analysis heuristics, thresholds and weighted CEL rules every stage reads.

``load_policy(path)`` returns a validated, immutable :class:`Policy`; stages other than the
analyzer use it read-only (noise lists, connect filters, recent_event_limit). See docs/rules.md.
"""

import os
from pathlib import Path

from policy.defaults import DANGEROUS_CAPABILITY_BITS
from policy.expressions import FEATURES
from policy.schema import (Analysis, Policy, PolicyError, Rule, Thresholds, describe, load_policy,
                           parse_policy)

__all__ = ["Analysis", "Policy", "PolicyError", "Rule", "Thresholds", "describe", "load_policy",
           "parse_policy", "rules_path", "FEATURES", "DANGEROUS_CAPABILITY_BITS"]


def rules_path() -> Path:
    """``$CASA_RULES_PATH``, else ``rules.json`` at the top of the checkout."""
    env = os.environ.get("CASA_RULES_PATH")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "rules.json"
