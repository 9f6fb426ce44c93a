"""The drainer: spooled batches (chalicelib/sinks/spool.py) published to Kafka once the broker takes them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from chalicelib.sinks import Record, Sink
from chalicelib.sinks.spool import decode_batch

log = logging.getLogger(__name__)


class Drainer:
    def __init__(self, sink: Sink, client: Callable[[str], Any]) -> None:
        self.sink = sink
        self._client = client

    def drain(self, message_bodies: list[str]) -> int:
        """Publish spooled batches, all with one flush; return their record count.

        Raises SinkUnavailable while Kafka does not take them: the invocation fails, and SQS hands the messages
        out again after their visibility timeout. A message that is not a spooled batch is logged and dropped,
        since no retry could ever publish it.
        """
        records: list[Record] = []
        claimed: list[dict[str, str]] = []
        for body in message_bodies:
            try:
                message = orjson.loads(body)
                if "s3" in message:
                    location = message["s3"]
                    records += decode_batch(self._claimed_batch(location))
                    claimed.append(location)
                else:
                    records += decode_batch(message["inline"])
            except (ValueError, KeyError, TypeError, LookupError) as exc:
                log.error("dropping a spool message that holds no batch: %r", exc)
        self.sink.publish(records)
        for location in claimed:
            self._client("s3").delete_object(Bucket=location["bucket"], Key=location["key"])
        log.info("drained %d spooled batches, %d records", len(message_bodies), len(records))
        return len(records)

    def _claimed_batch(self, location: dict[str, str]) -> bytes:
        """A large batch from the spool bucket; LookupError if it is gone (no retry would bring it back)."""
        s3 = self._client("s3")
        try:
            return s3.get_object(Bucket=location["bucket"], Key=location["key"])["Body"].read()
        except s3.exceptions.NoSuchKey as exc:
            raise LookupError(f"spooled batch s3://{location['bucket']}/{location['key']} is gone") from exc
