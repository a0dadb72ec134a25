"""A fake OpenAI-compatible model that plays scripted scenarios (see scenario.py for the format)."""

from evaluation.fakellm.scenario import Scenario, ScenarioError, ToolCall, load_scenario, load_scenarios

__all__ = ["Scenario", "ScenarioError", "ToolCall", "load_scenario", "load_scenarios"]
