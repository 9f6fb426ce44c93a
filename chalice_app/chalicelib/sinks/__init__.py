"""Where accepted and rejected events go. One module per sink; all take `Record`s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol


class Record(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes


class SinkUnavailable(Exception):
    """The sink did not acknowledge every record; the caller must not report them as accepted."""


class Sink(Protocol):
    def publish(self, records: Sequence[Record]) -> None:
        """Deliver every record or raise SinkUnavailable."""

    def reachable(self) -> bool:
        """Whether the sink answers right now."""
