"""Where accepted and rejected events go. One module per sink; all take `Record`s."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import NamedTuple, Protocol


class Record(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes


class Delivery(Enum):
    """Where a sink durably put a batch: what the collector may then tell the client."""

    #: In Kafka, acknowledged by every in-sync replica.
    STORED = "stored"
    #: In the spool, to be published to Kafka by the drainer.
    BUFFERED = "buffered"


class SinkUnavailable(Exception):
    """The sink did not durably take every record; the caller must not report them as accepted."""


class Sink(Protocol):
    def publish(self, records: Sequence[Record]) -> Delivery:
        """Deliver every record durably, saying where, or raise SinkUnavailable."""

    def reachable(self) -> bool:
        """Whether the sink answers right now."""
