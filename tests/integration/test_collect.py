"""POST /collect and GET /ping through chalice.test.Client, against the suite's real Kafka broker."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib import dependencies
from generator.synthetic import synthetic_events
from pipeline.config import Config
from pipeline.schema_registry import RegistryClient, pipeline_schemas, unframed
from tests.conftest import APP_DIR, read_topic, record_json

pytestmark = pytest.mark.slow

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def client(config: Config) -> Iterator[Client]:
    with pytest.MonkeyPatch.context() as environment:
        # Chalice() marks AWS_EXECUTION_ENV in the environment, as a Lambda's would be: undone with this module.
        environment.setenv("AWS_EXECUTION_ENV", os.environ.get("AWS_EXECUTION_ENV", ""))
        environment.delenv("AWS_EXECUTION_ENV")
        from app import app

        with Client(app, stage_name="dev", project_dir=str(APP_DIR)) as test_client:
            yield test_client


def post(client: Client, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.http.post("/collect", headers=headers or JSON, body=raw)


def test_valid_batch_lands_in_raw_topic_with_metadata(client: Client, config: Config) -> None:
    events = synthetic_events(50, seed=11)
    response = post(client, events, {**JSON, "User-Agent": "pytest-agent"})
    body = response.json_body
    assert response.status_code == 200, body
    assert (body["status"], body["processed_count"], body["valid_count"], body["invalid_count"]) == (
        "success",
        50,
        50,
        0,
    )
    assert body["errors"] == [] and body["elapsed_time"] > 0
    assert response.headers["X-Correlation-Id"] == body["correlation_id"]

    records = read_topic(
        config.kafka.bootstrap_servers,
        config.kafka.raw_topic,
        {"correlation_id": body["correlation_id"]},
        expected=50,
    )
    assert sorted(r.key.decode() for r in records) == sorted(e["id"] for e in events)
    by_id = {e["id"]: e for e in events}
    for record in records:
        value = record_json(record.value)
        meta = value.pop("collector")
        assert value == by_id[record.key.decode()]
        assert meta["user_agent"] == "pytest-agent"
        assert meta["source_ip"] == "127.0.0.1"
        assert meta["schema_id"].endswith("acme.clickstream.raw.events:1-0-0")
        assert meta["schema_version"] == "1-0-0"
        assert meta["received_at"].endswith("Z")
    # key = event id spreads a batch over the topic's partitions
    assert len({r.partition for r in records}) > 1
    # Confluent's wire format, with the id the registry gives the raw records' schema (`make up` registered it)
    raw = pipeline_schemas(config.kafka)[0]
    registered = RegistryClient(config.registry.url).lookup(raw.subject, raw.schema, raw.schema_type)
    assert registered and {unframed(r.value)[0] for r in records} == {registered}


def test_invalid_events_are_kept_with_their_reason(client: Client, config: Config) -> None:
    events = synthetic_events(20, seed=12)
    events[3]["type"] = "hover"
    del events[7]["event"]["customer_id"]
    events.insert(10, "not an event")
    response = post(client, events)
    body = response.json_body
    assert response.status_code == 200
    assert (body["status"], body["processed_count"], body["valid_count"], body["invalid_count"]) == (
        "partial",
        21,
        18,
        3,
    )
    reasons = {e["index"]: e["reason"] for e in body["errors"]}
    assert set(reasons) == {3, 7, 10}
    assert "$.type" in reasons[3] and "customer_id" in reasons[7] and "JSON object" in reasons[10]

    match = {"correlation_id": body["correlation_id"]}
    raw = read_topic(config.kafka.bootstrap_servers, config.kafka.raw_topic, match, expected=18)
    invalid = read_topic(config.kafka.bootstrap_servers, config.kafka.invalid_topic, match, expected=3)
    assert len(raw) == 18
    kept = {json.loads(r.value)["index"]: json.loads(r.value) for r in invalid}
    assert set(kept) == {3, 7, 10}
    assert kept[3]["payload"] == events[3] and kept[3]["reason"] == reasons[3]
    assert kept[10]["payload"] == "not an event"


def test_all_invalid_batch_is_refused_but_kept(client: Client, config: Config) -> None:
    events = [{"id": f"bad-{i}", "type": "click"} for i in range(3)]
    response = post(client, events)
    assert response.status_code == 400
    assert response.json_body["invalid_count"] == 3 and response.json_body["valid_count"] == 0
    kept = read_topic(
        config.kafka.bootstrap_servers,
        config.kafka.invalid_topic,
        {"correlation_id": response.json_body["correlation_id"]},
        expected=3,
    )
    assert sorted(r.key.decode() for r in kept) == ["bad-0", "bad-1", "bad-2"]


def test_single_object_and_text_plain_are_accepted(client: Client) -> None:
    event = synthetic_events(1, seed=13)[0]
    assert post(client, event).json_body["valid_count"] == 1
    # navigator.sendBeacon sends text/plain
    response = post(client, [event], {"Content-Type": "text/plain;charset=UTF-8"})
    assert response.status_code == 200 and response.json_body["valid_count"] == 1


@pytest.mark.parametrize(
    ("body", "headers", "status", "reason"),
    [
        ("{not json", JSON, 400, "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, JSON, 400, "nested too deeply"),
        ('[{"id": NaN}]', JSON, 400, "not valid JSON"),
        ("[1e400]", JSON, 400, "not valid JSON"),
        (b"\xff\xfe[]", JSON, 400, "not UTF-8"),
        ("42", JSON, 400, "must be an event object or an array"),
        ("[]", JSON, 400, "empty array"),
        ("[]", {"Content-Type": "application/xml"}, 415, "content type 'application/xml' is not accepted"),
        ("a=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "is not accepted"),
    ],
)
def test_bad_bodies_get_a_clear_4xx(
    client: Client, body: Any, headers: dict[str, str], status: int, reason: str
) -> None:
    response = post(client, body, headers)
    assert response.status_code == status
    assert response.json_body["status"] == "rejected"
    assert reason in response.json_body["message"]
    assert response.json_body["valid_count"] == 0


def test_refused_requests_are_kept_in_the_invalid_topic(client: Client, config: Config) -> None:
    response = post(client, "{broken")
    kept = read_topic(
        config.kafka.bootstrap_servers,
        config.kafka.invalid_topic,
        {"correlation_id": response.json_body["correlation_id"]},
        expected=1,
    )
    assert len(kept) == 1
    value = json.loads(kept[0].value)
    assert value["body"] == "{broken" and value["status_code"] == 400 and "not valid JSON" in value["reason"]


def test_limits_answer_413(client: Client, config: Config) -> None:
    too_many = synthetic_events(config.collector.max_batch_events + 1, seed=14)
    response = post(client, too_many)
    assert response.status_code == 413 and "exceeds the limit of 1000" in response.json_body["message"]

    events = synthetic_events(3, seed=15)
    events[1]["event"]["page"] = "/" + "x" * (config.collector.max_event_bytes + 1)
    response = post(client, events)
    assert response.status_code == 413
    assert [(e["index"], e["id"]) for e in response.json_body["errors"]] == [(1, events[1]["id"])]
    assert "per-event size limit" in response.json_body["message"]
    # nothing of a refused batch is accepted, not even its valid events
    assert (
        read_topic(
            config.kafka.bootstrap_servers,
            config.kafka.raw_topic,
            {"correlation_id": response.json_body["correlation_id"]},
            expected=0,
            timeout_s=3,
        )
        == []
    )

    huge = b"[" + b" " * config.collector.max_body_bytes + b"]"
    response = post(client, huge)
    assert response.status_code == 413 and "exceeds the limit of 10485760 bytes" in response.json_body["message"]


def test_cors_for_allowed_origins_only(client: Client) -> None:
    allowed = {"Origin": "http://localhost:8000", "Access-Control-Request-Method": "POST"}
    preflight = client.http.request("OPTIONS", "/collect", headers=allowed)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "http://localhost:8000"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "Content-Type"

    denied = client.http.request("OPTIONS", "/collect", headers={**allowed, "Origin": "https://evil.example"})
    assert denied.status_code == 403 and "Access-Control-Allow-Origin" not in denied.headers

    response = post(client, synthetic_events(1, seed=16), {**JSON, "Origin": "http://localhost:8000"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:8000"


def test_ping_reports_kafka(client: Client, config: Config) -> None:
    response = client.http.get("/ping")
    assert response.status_code == 200
    assert response.json_body["status"] == "OK"
    assert response.json_body["kafka"] == {
        "bootstrap_servers": config.kafka.bootstrap_servers,
        "reachable": True,
    }


def test_unreachable_kafka_is_503_and_nothing_accepted(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from stack.process import free_port

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("KAFKA_SEND_TIMEOUT_S", "2")
    dependencies.reset()
    try:
        response = post(client, synthetic_events(5, seed=17))
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        body = response.json_body
        assert body["status"] == "unavailable" and body["valid_count"] == 0
        assert "retry the whole batch" in body["message"]
        assert client.http.get("/ping").json_body["kafka"]["reachable"] is False
    finally:
        monkeypatch.undo()
        dependencies.reset()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_no_body_gives_a_5xx(client: Client, body: bytes) -> None:
    response = client.http.post("/collect", headers=JSON, body=body)
    assert response.status_code in (200, 400, 413), response.json_body
