"""The spool: where a batch waits, durably, while Kafka does not take it (SQS, with S3 for large batches).

A spooled batch is one SQS message holding its records as they would have gone to Kafka. A batch over what
an SQS message holds (256 KiB) goes to S3, and its message points there (the claim-check pattern). The
drainer (chalicelib/drainer.py), a Lambda on the queue, publishes each batch to Kafka once the broker is back;
until then SQS hands the message out again after its visibility timeout. Event ids make a replay harmless:
the lake deduplicates on them.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from chalicelib.sinks import Delivery, Record, Sink, SinkUnavailable
from pipeline.config_sections import CollectorConfig

log = logging.getLogger(__name__)

#: An SQS message holds at most 256 KiB; a batch encoded larger goes to S3.
MAX_INLINE_BYTES = 200 * 1024
FORMAT_VERSION = 1


def encode_batch(records: Sequence[Record]) -> bytes:
    """The spooled form of a batch: JSON, with keys and values as base64 (they are bytes)."""
    rows = [
        [r.topic, None if r.key is None else base64.b64encode(r.key).decode(), base64.b64encode(r.value).decode()]
        for r in records
    ]
    return orjson.dumps({"version": FORMAT_VERSION, "records": rows})


def decode_batch(data: bytes | str) -> list[Record]:
    document = orjson.loads(data)
    if document.get("version") != FORMAT_VERSION:
        raise ValueError(f"spooled batch of unknown format version {document.get('version')!r}")
    return [
        Record(topic, None if key is None else base64.b64decode(key), base64.b64decode(value))
        for topic, key, value in document["records"]
    ]


class SqsSpool:
    """Puts batches on the spool queue (and large ones in the spool bucket). Clients are made on first use."""

    def __init__(self, collector: CollectorConfig, client: Callable[[str], Any]) -> None:
        self._queue, self._bucket = collector.spool_queue, collector.spool_bucket
        self._client = client
        self._queue_url: str | None = None

    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = self._client("sqs").get_queue_url(QueueName=self._queue)["QueueUrl"]
        return self._queue_url

    def publish(self, records: Sequence[Record]) -> Delivery:
        batch = encode_batch(records)
        try:
            if len(batch) <= MAX_INLINE_BYTES:
                message = {"inline": batch.decode()}
            else:
                key = f"spool/{time.strftime('%Y/%m/%d', time.gmtime())}/{uuid.uuid4()}.json"
                self._client("s3").put_object(Bucket=self._bucket, Key=key, Body=batch)
                message = {"s3": {"bucket": self._bucket, "key": key}}
            self._client("sqs").send_message(QueueUrl=self.queue_url(), MessageBody=orjson.dumps(message).decode())
        except Exception as exc:  # botocore raises many kinds; any of them means "not spooled"
            self._queue_url = None
            raise SinkUnavailable(f"the spool did not take the batch either: {exc!r}") from exc
        return Delivery.BUFFERED

    def reachable(self) -> bool:
        try:
            self.queue_url()
            return True
        except Exception:
            return False


class FallbackSink:
    """Kafka first; when it does not take a batch, the spool.

    After a failure Kafka is skipped for `cooldown_s`: while the broker is down, each request would otherwise
    wait the whole send timeout before it is spooled.
    """

    def __init__(self, primary: Sink, spool: Sink, cooldown_s: float) -> None:
        self.primary = primary
        self.spool = spool
        self._cooldown_s = cooldown_s
        self._skip_primary_until = 0.0
        self._lock = threading.Lock()

    def publish(self, records: Sequence[Record]) -> Delivery:
        if time.monotonic() >= self._skip_primary_until:
            try:
                return self.primary.publish(records)
            except SinkUnavailable as exc:
                log.warning("spooling a batch of %d records: %s", len(records), exc)
                with self._lock:
                    self._skip_primary_until = time.monotonic() + self._cooldown_s
        return self.spool.publish(records)

    def reachable(self) -> bool:
        return self.primary.reachable()
