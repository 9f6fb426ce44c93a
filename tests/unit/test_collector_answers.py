"""The collector's whole status table in milliseconds, with an in-memory sink (the real broker's cases are in
tests/integration/test_collect.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.collector import Collector, RequestInfo
from chalicelib.sinks.memory import MemorySink
from generator.synthetic import synthetic_events
from pipeline.config import Config

CONFIG = Config.defaults()


def answer(body: bytes, sink: MemorySink | None = None, content_type: str = "application/json") -> tuple[int, Any]:
    outcome = Collector(CONFIG, sink or MemorySink()).collect(body, RequestInfo(content_type, "127.0.0.1", "t"))
    return outcome.status_code, outcome.body


def events(n: int, **kwargs: Any) -> bytes:
    return json.dumps(synthetic_events(n, seed=7, **kwargs)).encode()


def test_every_event_valid_and_stored_is_200_success() -> None:
    sink = MemorySink()
    status, body = answer(events(5), sink)
    assert (status, body["status"], body["valid_count"], body["errors"]) == (200, "success", 5, [])
    assert {r.topic for r in sink.records} == {CONFIG.kafka.raw_topic} and len(sink.records) == 5


def test_some_invalid_is_200_partial_with_a_reason_each() -> None:
    sink = MemorySink()
    status, body = answer(events(40, invalid_share=0.3), sink)
    assert (status, body["status"]) == (200, "partial")
    assert body["invalid_count"] == len(body["errors"]) > 0
    assert all(e["reason"] and e["code"] and e["path"].startswith("$") for e in body["errors"])
    kept = [json.loads(r.value) for r in sink.records if r.topic == CONFIG.kafka.invalid_topic]
    assert [(k["index"], k["code"], k["path"]) for k in kept] == [
        (e["index"], e["code"], e["path"]) for e in body["errors"]
    ]


@pytest.mark.parametrize(
    ("body", "status", "code", "message"),
    [
        (b"[{]", 400, "body.malformed", "not valid JSON"),
        (b'["\xff"]', 400, "body.encoding", "not UTF-8"),
        (b"[" * 2000 + b"]" * 2000, 400, "body.depth", "nested too deeply"),
        (b"[NaN]", 400, "body.malformed", "not valid JSON"),
        (b"[]", 400, "batch.empty", "empty array"),
        (b"42", 400, "body.shape", "an event object or an array"),
        (json.dumps([{"id": "x"}] * 1001).encode(), 413, "batch.size", "exceeds the limit of 1000"),
        (b" " * (10 * 1024 * 1024 + 1), 413, "body.size", "exceeds the limit of 10485760 bytes"),
        (json.dumps([{"id": "x" * 40_000}]).encode(), 413, "size.event", "per-event size limit"),
    ],
)
def test_refused_bodies_are_4xx_with_a_code_and_reason_and_kept(
    body: bytes, status: int, code: str, message: str
) -> None:
    sink = MemorySink()
    status_code, answered = answer(body, sink)
    assert (status_code, answered["status"], answered["code"]) == (status, "rejected", code)
    assert message in answered["message"]
    (kept,) = sink.records  # the refusal itself, in the invalid topic
    record = json.loads(kept.value)
    assert kept.topic == CONFIG.kafka.invalid_topic and (record["status_code"], record["code"]) == (status, code)


def test_no_valid_event_is_400_and_each_is_kept() -> None:
    sink = MemorySink()
    status, body = answer(json.dumps([{"id": "a"}, {"id": "b"}]).encode(), sink)
    assert (status, body["status"], body["invalid_count"]) == (400, "rejected", 2)
    assert [json.loads(r.value)["index"] for r in sink.records] == [0, 1]


def test_another_content_type_is_415() -> None:
    status, body = answer(events(1), content_type="application/xml")
    assert (status, body["status"]) == (415, "rejected")


def test_text_plain_is_accepted_for_beacons() -> None:
    assert answer(events(1), content_type="text/plain;charset=UTF-8")[0] == 200


def test_a_sink_that_does_not_take_the_batch_is_503_and_nothing_accepted() -> None:
    status, body = answer(events(3), MemorySink(down=True))
    assert (status, body["status"], body["valid_count"], body["invalid_count"]) == (503, "unavailable", 0, 0)
