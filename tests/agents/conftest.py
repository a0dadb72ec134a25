"""The profile tests drive the sessionizer's core on synthetic events: its fixtures, not a copy."""

from tests.sessionizer.conftest import core, ev, settings  # noqa: F401  (pytest fixtures by name)
