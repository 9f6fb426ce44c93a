"""An in-memory sink: what the collector published, kept in a list (for tests and the in-process benchmark)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from chalicelib.sinks import Delivery, Record, SinkUnavailable


@dataclass
class MemorySink:
    """Keeps every record it is given; while `down`, refuses them as a broker that does not answer would."""

    delivery: Delivery = Delivery.STORED
    down: bool = False
    records: list[Record] = field(default_factory=list)

    def publish(self, records: Sequence[Record]) -> Delivery:
        if self.down:
            raise SinkUnavailable("the memory sink is down")
        self.records.extend(records)
        return self.delivery

    def reachable(self) -> bool:
        return not self.down
