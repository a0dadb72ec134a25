"""The CASA bus contract: envelopes, topics, events, sequencing and endpoints (docs/bus.md)."""

from bus.endpoints import analyzer_streams, bind_publisher, bus_dir, connect_subscriber, endpoint
from bus.envelope import VERSION, Envelope, pack, unpack
from bus.errors import BusError, BusPermissionError, MalformedMessage, UnknownVersion
from bus.events import KINDS, validate_event
from bus.publisher import Publisher
from bus.sequence import SequenceTracker
from bus.subscriber import Subscriber
from bus.text import from_kernel, from_wire, to_bytes, to_wire

__all__ = [
    "VERSION", "Envelope", "pack", "unpack",
    "BusError", "BusPermissionError", "MalformedMessage", "UnknownVersion",
    "KINDS", "validate_event", "Publisher", "Subscriber", "SequenceTracker",
    "analyzer_streams", "bind_publisher", "bus_dir", "connect_subscriber", "endpoint",
    "from_kernel", "from_wire", "to_bytes", "to_wire",
]
