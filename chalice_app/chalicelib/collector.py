"""The collector's service: from a request body to records in Kafka and an answer for the client.

Independent of Chalice, so the routes stay thin and the benchmark can call it in-process.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from chalicelib.rate_limit import RateLimiter, retry_after
from chalicelib.sinks import Delivery, Record, Sink, SinkUnavailable
from chalicelib.validation import SCHEMA_ID, SCHEMA_VERSION, ClockWindow, Problem, lake_problem, schema_problem
from chalicelib.write_keys import WriteKey, WriteKeys, WriteKeysUnavailable
from pipeline import problems
from pipeline.config import Config
from pipeline.contract import METADATA_FIELDS
from pipeline.schema_registry import framed

log = logging.getLogger(__name__)

# sendBeacon can only send text/plain cross-origin without a CORS preflight, so JSON comes as either.
ACCEPTED_CONTENT_TYPES = ("application/json", "text/plain")


@dataclass(frozen=True)
class RequestInfo:
    """What the collector records about where a batch came from."""

    content_type: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    #: The write key the request carries (chalicelib.write_keys.key_of), if any.
    write_key: str | None = None


@dataclass
class Outcome:
    status_code: int
    body: dict[str, Any]
    #: Seconds the client should wait before resending (a Retry-After header), for 429 and 503.
    retry_after_s: str | None = None


@dataclass
class _Rejected(Exception):
    """The whole request is refused before anything reaches Kafka."""

    #: Why (pipeline/problems.py: body.* for the body, batch.* for its events together, size.event for one too
    #: large, auth.write_key for a missing or unknown key, rate.limit past the key's rate), and so the HTTP status.
    code: problems.Code
    reason: str
    errors: list[dict[str, Any]] = field(default_factory=list)
    retry_after_s: str | None = None
    #: Whether the refused body goes to the invalid topic: not for a throttled batch, which the client resends.
    kept: bool = True


def _dumps(value: Any) -> bytes:
    # orjson: compact UTF-8, and ~3x faster than the standard library's json at both ends.
    return orjson.dumps(value)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Collector:
    """Routes -> this service -> sinks. Without `write_keys` every request may write (REQUIRE_WRITE_KEY off);
    without `limiter`, at any rate. With `registry_id` (the registry's id of the raw topic's schema), raw records
    are in Confluent's wire format; without, plain JSON (both are read by the lake writer)."""

    def __init__(
        self,
        config: Config,
        sink: Sink,
        write_keys: WriteKeys | None = None,
        limiter: RateLimiter | None = None,
        registry_id: int | None = None,
    ) -> None:
        self.config = config
        self.limits = config.collector
        self.sink = sink
        self.write_keys = write_keys
        self.limiter = limiter
        self.raw_prefix = b"" if registry_id is None else framed(registry_id, b"")
        self.clock_window = ClockWindow(
            earliest=datetime.fromisoformat(config.collector.earliest_event_time),
            ahead=timedelta(seconds=config.collector.max_clock_ahead_s),
        )

    def collect(self, body: bytes, request: RequestInfo) -> Outcome:
        started = time.perf_counter()
        correlation_id = str(uuid.uuid4())
        received_at = _now_iso()
        meta = dict(
            zip(
                METADATA_FIELDS,
                (correlation_id, received_at, request.source_ip, request.user_agent, SCHEMA_ID, SCHEMA_VERSION),
                strict=True,
            )
        )
        counts = {"processed_count": 0, "valid_count": 0, "invalid_count": 0}

        def answer(
            status_code: int, status: str, errors: list[dict[str, Any]], retry: str | None = None, **extra: Any
        ) -> Outcome:
            body = {
                "status": status,
                "correlation_id": correlation_id,
                **counts,
                "elapsed_time": round(time.perf_counter() - started, 6),
                "errors": errors,
                **extra,
            }
            return Outcome(status_code, body, retry)

        try:
            key = self._authenticate(request.write_key)
            events = self._parse(body, request)
            self._throttle(key, len(events))
            records, errors = self._records(events, meta, key)
        except WriteKeysUnavailable as exc:
            log.warning("batch %s not accepted: %s", correlation_id, exc)
            return answer(503, "unavailable", [], "1", message="the write keys cannot be read now; retry later")
        except _Rejected as rejected:
            if rejected.kept:
                self._keep_rejected_request(body, rejected, meta)
            assert rejected.code.status is not None
            return answer(
                rejected.code.status,
                "rejected",
                rejected.errors,
                rejected.retry_after_s,
                message=rejected.reason,
                code=rejected.code.code,
            )

        counts.update(processed_count=len(events), valid_count=len(events) - len(errors), invalid_count=len(errors))
        try:
            delivery = self.sink.publish(records)
        except SinkUnavailable as exc:
            log.warning("batch %s not accepted: %s", correlation_id, exc)
            counts.update(valid_count=0, invalid_count=0)
            message = f"{exc}. Nothing was accepted; retry the whole batch."
            return answer(503, "unavailable", errors, "1", message=message)

        log.info("batch %s %s: %s", correlation_id, delivery.value, counts)
        if not counts["valid_count"]:
            return answer(400, "rejected", errors, message="no event in the batch is valid")
        if delivery is Delivery.BUFFERED:
            # Durable in the spool, not yet in Kafka: accepted, and on its way (the drainer publishes it).
            return answer(202, "buffered", errors)
        return answer(200, "partial" if errors else "success", errors)

    def _authenticate(self, write_key: str | None) -> WriteKey | None:
        """The request's key; None when keys are not required. Raises _Rejected (401) for a missing or unknown
        key, WriteKeysUnavailable when the keys cannot be read."""
        if self.write_keys is None:
            return None
        found = self.write_keys.lookup(write_key)
        if found is None:
            why = "no write key" if write_key is None else "an unknown write key"
            reason = f"{why}: send the source's key as X-Write-Key, as HTTP Basic's user name, or as ?key="
            raise _Rejected(problems.AUTH_WRITE_KEY, reason)
        return found

    def _throttle(self, key: WriteKey | None, events: int) -> None:
        """Raises _Rejected (429) when the key's events would pass its rate."""
        if self.limiter is None or key is None:
            return
        wait_s = self.limiter.take(key.key, events, key.events_per_s)
        if wait_s:
            reason = f"the write key is past its rate limit; nothing was accepted, resend after {wait_s:.1f}s"
            raise _Rejected(problems.RATE_LIMIT, reason, retry_after_s=retry_after(wait_s), kept=False)

    def _parse(self, body: bytes, request: RequestInfo) -> list[Any]:
        limits = self.limits
        media_type = (request.content_type or "application/json").split(";")[0].strip().lower()
        if media_type not in ACCEPTED_CONTENT_TYPES:
            raise _Rejected(
                problems.BODY_CONTENT_TYPE,
                f"content type {media_type!r} is not accepted; send application/json or text/plain",
            )
        if len(body) > limits.max_body_bytes:
            reason = f"body of {len(body)} bytes exceeds the limit of {limits.max_body_bytes} bytes"
            raise _Rejected(problems.BODY_SIZE, reason)
        try:
            # Strict: NaN, Infinity, numbers that overflow a double, invalid UTF-8 and nesting deeper than
            # 1024 are all refused, so whatever is accepted can be written back as valid JSON.
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            message = str(exc)
            if "depth limit" in message:
                raise _Rejected(problems.BODY_DEPTH, f"body is nested too deeply to parse: {message}") from None
            if "UTF-8" in message:
                raise _Rejected(problems.BODY_ENCODING, f"body is not UTF-8: {message}") from None
            raise _Rejected(problems.BODY_MALFORMED, f"body is not valid JSON: {message}") from None
        if isinstance(parsed, dict):
            return [parsed]
        if not isinstance(parsed, list):
            raise _Rejected(
                problems.BODY_SHAPE, f"body must be an event object or an array of events, not {type(parsed).__name__}"
            )
        if not parsed:
            raise _Rejected(problems.BATCH_EMPTY, "body is an empty array: there are no events to collect")
        if len(parsed) > limits.max_batch_events:
            reason = f"batch of {len(parsed)} events exceeds the limit of {limits.max_batch_events}"
            raise _Rejected(problems.BATCH_SIZE, reason)
        return parsed

    def _records(
        self, events: list[Any], meta: dict[str, Any], write_key: WriteKey | None = None
    ) -> tuple[list[Record], list[dict[str, Any]]]:
        """Valid events become raw records, invalid ones invalid records; an oversized event refuses all."""
        limits, topics = self.limits, self.config.kafka
        meta_field = b',"collector":' + _dumps(meta) + b"}"
        records: list[Record] = []
        errors: list[dict[str, Any]] = []
        oversized: list[dict[str, Any]] = []
        for index, event in enumerate(events):
            event_id = event.get("id") if isinstance(event, dict) else None
            encoded = _dumps(event)
            size = len(encoded)
            if size > limits.max_event_bytes:
                reason = f"event of {size} bytes exceeds the limit of {limits.max_event_bytes} bytes"
                code = problems.SIZE_EVENT.code
                oversized.append({"index": index, "id": event_id, "code": code, "path": "$", "reason": reason})
                continue
            problem = self._problem(event, write_key)
            if problem is None:
                # The event serialised once, with the metadata spliced in before its closing brace: a valid
                # event is a non-empty object that has no "collector" key (the schema forbids other keys).
                records.append(Record(topics.raw_topic, event_id.encode(), self.raw_prefix + encoded[:-1] + meta_field))
                continue
            described = {"code": problem.code, "path": problem.path, "reason": problem.reason}
            errors.append({"index": index, "id": event_id, **described})
            invalid = {"index": index, **described, "payload": event, "collector": meta}
            key = event_id.encode() if isinstance(event_id, str) else None
            records.append(Record(topics.invalid_topic, key, _dumps(invalid)))
        if oversized:
            raise _Rejected(
                problems.SIZE_EVENT, f"{len(oversized)} event(s) exceed the per-event size limit", oversized
            )
        return records, errors

    def _problem(self, event: Any, write_key: WriteKey | None) -> Problem | None:
        """Why `event` cannot be taken: the schema first, then the lake's column types and clock window, then the
        write key's packages."""
        if not isinstance(event, dict):
            return Problem(problems.EVENT_SHAPE.code, "$", "event must be a JSON object")
        problem = schema_problem(event) or lake_problem(event, self.clock_window)
        if problem is None and write_key is not None and not write_key.allows(event["package_id"]):
            reason = f"$.package_id: the write key may not write package {event['package_id']!r}"
            return Problem(problems.AUTH_PACKAGE.code, "$.package_id", reason)
        return problem

    def _keep_rejected_request(self, body: bytes, rejected: _Rejected, meta: dict[str, Any]) -> None:
        """Keep a refused request in the invalid topic with its reason (best effort: the client has its 4xx)."""
        limit = self.limits.rejected_body_bytes
        invalid = {
            "index": None,
            "code": rejected.code.code,
            "reason": rejected.reason,
            "status_code": rejected.code.status,
            "body": body[:limit].decode("utf-8", errors="replace"),
            "body_bytes": len(body),
            "collector": meta,
        }
        try:
            self.sink.publish([Record(self.config.kafka.invalid_topic, None, _dumps(invalid))])
        except SinkUnavailable as exc:
            log.warning("rejected request %s not kept: %s", meta["correlation_id"], exc)
