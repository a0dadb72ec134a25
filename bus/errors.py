"""Errors of the bus contract."""

from __future__ import annotations


class BusError(Exception):
    """Base class for bus contract errors."""


class MalformedMessage(BusError):
    """A message that does not follow docs/bus.md. Subscribers count it and drop it."""


class UnknownVersion(MalformedMessage):
    """An envelope whose ``v`` this build does not speak. Counted separately, then dropped."""


class BusPermissionError(BusError):
    """The bus directory or a socket cannot be created with the permissions the contract requires."""
