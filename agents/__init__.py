"""Agent profiles (config/casa.json): which processes are agent roots, and what a session of each is."""

from agents.profiles import Matcher, Profile, ProfileError, load_config, load_profiles

__all__ = ["Matcher", "Profile", "ProfileError", "load_config", "load_profiles"]
