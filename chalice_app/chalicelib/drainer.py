"""The drainer: spooled batches (chalicelib/sinks/spool.py) published to Kafka once the broker takes them."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from chalicelib.sinks import Sink
from chalicelib.sinks.spool import decode_batch

log = logging.getLogger(__name__)


class Drainer:
    def __init__(self, sink: Sink, client: Callable[[str], Any]) -> None:
        self.sink = sink
        self._client = client

    def drain(self, message_body: str) -> int:
        """Publish one spooled batch; return its record count.

        Raises SinkUnavailable while Kafka does not take it: the invocation fails, and SQS hands the message
        out again after its visibility timeout. A message that is not a spooled batch is logged and dropped,
        since no retry could ever publish it.
        """
        try:
            message = orjson.loads(message_body)
            if "s3" in message:
                location = message["s3"]
                body = self._client("s3").get_object(Bucket=location["bucket"], Key=location["key"])["Body"].read()
            else:
                body = message["inline"]
            records = decode_batch(body)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("dropping a spool message that holds no batch: %r", exc)
            return 0
        self.sink.publish(records)
        if "s3" in message:
            self._client("s3").delete_object(Bucket=location["bucket"], Key=location["key"])
        log.info("drained a spooled batch of %d records", len(records))
        return len(records)
