"""Fixtures for analyzer tests: the bundled and evaluation policies, a sequence builder, a core."""

from __future__ import annotations

import pytest

from analyzer.core import Analyzer
from tests.analyzer.analyzer_sequences import CHECKOUT, ORIGINAL_RULES, Seq, indexed_policy
from policy import Policy, load_policy


@pytest.fixture(scope="session")
def bundled() -> Policy:
    """The original twelve and their analysis values in the default indexed mode: the flag and
    core tests count their rules and use their sensitive lists (rules.json, the default pack,
    narrows those; tests/analyzer/test_pack.py scores the pack itself)."""
    return indexed_policy(ORIGINAL_RULES)


@pytest.fixture(scope="session")
def eval_policy() -> Policy:
    """The evaluation's analysis values and the original rules, in the default indexed mode
    (the file itself runs in "original" mode for make eval's parity column)."""
    return indexed_policy(CHECKOUT / "config" / "rules.eval.json")


@pytest.fixture(scope="session")
def original() -> Policy:
    """The exact original pack in history_mode "original" (config/rules.original.json)."""
    return load_policy(ORIGINAL_RULES)


@pytest.fixture
def seq() -> Seq:
    return Seq()


@pytest.fixture
def core(bundled: Policy) -> Analyzer:
    return Analyzer(bundled)
