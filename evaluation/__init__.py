"""Evaluation of CASA against the real OpenClaw, driven by a scripted fake model (issue 6)."""
