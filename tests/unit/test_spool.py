"""The spool's encoding, the fallback from Kafka to the spool, and what the collector answers for each."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.collector import Collector, RequestInfo
from chalicelib.drainer import Drainer
from chalicelib.sinks import Delivery, Record
from chalicelib.sinks.memory import MemorySink
from chalicelib.sinks.spool import FallbackSink, decode_batch, encode_batch
from generator.synthetic import synthetic_events
from pipeline.config import Config

records = st.lists(
    st.builds(Record, st.sampled_from(["raw", "invalid"]), st.none() | st.binary(max_size=40), st.binary()),
    max_size=20,
)


@given(records)
def test_a_spooled_batch_comes_back_byte_for_byte(batch: list[Record]) -> None:
    assert decode_batch(encode_batch(batch)) == batch


def collector_with(kafka: MemorySink, spool: MemorySink | None, cooldown_s: float = 60) -> Collector:
    settings = Config.defaults()
    sink = kafka if spool is None else FallbackSink(kafka, spool, cooldown_s)
    return Collector(settings, sink)


def post(collector: Collector, events: list[Any]) -> tuple[int, dict[str, Any]]:
    outcome = collector.collect(json.dumps(events).encode(), RequestInfo("application/json", "127.0.0.1", "t"))
    return outcome.status_code, outcome.body


def test_kafka_taking_the_batch_is_200_and_nothing_is_spooled() -> None:
    kafka, spool = MemorySink(), MemorySink(delivery=Delivery.BUFFERED)
    status, body = post(collector_with(kafka, spool), synthetic_events(3, seed=1))
    assert (status, body["status"], body["valid_count"]) == (200, "success", 3)
    assert len(kafka.records) == 3 and spool.records == []


def test_kafka_down_the_batch_is_spooled_whole_and_answered_202() -> None:
    kafka, spool = MemorySink(down=True), MemorySink(delivery=Delivery.BUFFERED)
    events = synthetic_events(20, seed=2, invalid_share=0.2)
    status, body = post(collector_with(kafka, spool), events)
    assert (status, body["status"]) == (202, "buffered")
    assert body["valid_count"] + body["invalid_count"] == 20 and body["invalid_count"] > 0
    assert len(spool.records) == 20  # valid and invalid records alike, as they would have gone to Kafka


def test_after_a_failure_kafka_is_skipped_for_the_cooldown() -> None:
    kafka, spool = MemorySink(down=True), MemorySink(delivery=Delivery.BUFFERED)
    collector = collector_with(kafka, spool, cooldown_s=60)
    post(collector, synthetic_events(1, seed=3))
    kafka.down = False  # back, but within the cooldown the collector does not try it
    status, _ = post(collector, synthetic_events(1, seed=4))
    assert status == 202 and kafka.records == [] and len(spool.records) == 2

    collector = collector_with(MemorySink(down=True), MemorySink(delivery=Delivery.BUFFERED), cooldown_s=0)
    post(collector, synthetic_events(1, seed=3))
    collector.sink.primary.down = False
    assert post(collector, synthetic_events(1, seed=4))[0] == 200


def test_spool_refusing_too_is_503_and_nothing_accepted() -> None:
    status, body = post(collector_with(MemorySink(down=True), MemorySink(down=True)), synthetic_events(5, seed=5))
    assert (status, body["status"], body["valid_count"]) == (503, "unavailable", 0)


def test_no_spool_configured_is_503_as_before() -> None:
    status, body = post(collector_with(MemorySink(down=True), None), synthetic_events(5, seed=6))
    assert (status, body["status"]) == (503, "unavailable")


def test_an_all_invalid_batch_is_400_even_when_buffered() -> None:
    kafka, spool = MemorySink(down=True), MemorySink(delivery=Delivery.BUFFERED)
    status, body = post(collector_with(kafka, spool), [{"id": "x", "type": "nope"}])
    assert (status, body["status"]) == (400, "rejected") and len(spool.records) == 1


def test_the_drainer_publishes_inline_batches_and_drops_what_is_no_batch() -> None:
    batch = [Record("raw", b"k", b'{"id": "k"}'), Record("invalid", None, b"{}")]
    kafka = MemorySink()
    drained = Drainer(kafka, client=lambda name: None).drain(
        [json.dumps({"inline": encode_batch(batch).decode()}), "not a spool message"]
    )
    assert drained == 2 and kafka.records == batch
