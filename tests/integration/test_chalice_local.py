"""The collector over real HTTP under `chalice local`, including the broker going away and coming back."""

from __future__ import annotations

import pytest
import requests

from generator.synthetic import synthetic_events
from pipeline.config import Config
from stack import kafka
from tests.api_fuzz import REQUESTS_PER_OPERATION, chalice_local_on_fuzz_topics, fuzz
from tests.conftest import read_topic, report
from tests.stacks import Stack

pytestmark = pytest.mark.slow


def test_batch_over_http_lands_in_kafka(chalice_local_url: str, config: Config) -> None:
    events = synthetic_events(987, seed=21, invalid_share=0.1)
    response = requests.post(f"{chalice_local_url}/collect", json=events, timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["processed_count"] == 987
    assert body["valid_count"] + body["invalid_count"] == 987 and body["invalid_count"] > 0
    match = {"correlation_id": body["correlation_id"]}
    raw = read_topic(config.kafka.bootstrap_servers, config.kafka.raw_topic, match, body["valid_count"])
    invalid = read_topic(config.kafka.bootstrap_servers, config.kafka.invalid_topic, match, body["invalid_count"])
    rejected_ids = {e["id"] for e in body["errors"]}
    assert sorted(r.key.decode() for r in raw) == sorted(e["id"] for e in events if e["id"] not in rejected_ids)
    assert sorted(r.key.decode() for r in invalid) == sorted(rejected_ids)


def test_broker_down_gives_503_then_recovers(chalice_local_url: str, config: Config, suite_stack: Stack) -> None:
    warm = requests.post(f"{chalice_local_url}/collect", json=synthetic_events(5, seed=22), timeout=30)
    assert warm.status_code == 200  # the producer exists and is connected before the broker goes away
    events = synthetic_events(5, seed=23)
    with suite_stack.held("kafka"):
        kafka.stop(config)
        try:
            down = requests.post(f"{chalice_local_url}/collect", json=events, timeout=60)
            assert down.status_code == 503, down.text
            assert down.json()["valid_count"] == 0 and down.json()["status"] == "unavailable"
            assert requests.get(f"{chalice_local_url}/ping", timeout=10).json()["kafka"]["reachable"] is False
        finally:
            kafka.start(config)
    # The client retries the same batch: it is accepted in full by a fresh producer.
    again = requests.post(f"{chalice_local_url}/collect", json=events, timeout=60)
    assert again.status_code == 200 and again.json()["valid_count"] == 5
    landed = read_topic(
        config.kafka.bootstrap_servers,
        config.kafka.raw_topic,
        {"correlation_id": again.json()["correlation_id"]},
        expected=5,
    )
    assert sorted(r.key.decode() for r in landed) == sorted(e["id"] for e in events)


def test_fuzzed_requests_get_documented_answers_and_no_5xx(config: Config) -> None:
    """schemathesis against the OpenAPI document: at least 1,000 requests, every answer as documented."""
    with chalice_local_on_fuzz_topics(config) as url:
        result = fuzz(url, REQUESTS_PER_OPERATION)
    report("fuzz chalice local", {"requests": dict(result.requests), "statuses": dict(result.statuses)})
    assert sum(result.requests.values()) >= REQUESTS_PER_OPERATION >= 1000
    assert not [s for s in result.statuses if s >= 500], result.statuses
    assert result.failures == []
