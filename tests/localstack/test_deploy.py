"""`make deploy` on a real LocalStack: API Gateway -> Lambda (local process) -> the suite's Kafka, and the shop."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from chalicelib.settings import Settings, setting
from generator.synthetic import synthetic_events
from stack import localstack
from tests.api_fuzz import REQUESTS_PER_OPERATION, fuzz
from tests.conftest import REPO, read_topic

pytestmark = pytest.mark.slow

EVENT_FILE = REPO / "localstack" / "events" / "collect-proxy-event.json"


def test_batch_through_api_gateway_lands_in_kafka(deployment: dict[str, str], kafka_settings: Settings) -> None:
    events = synthetic_events(987, seed=31, invalid_share=0.05)
    response = requests.post(f"{deployment['api_url']}/collect", json=events, timeout=60)
    body = response.json()
    assert response.status_code == 200, body
    assert body["processed_count"] == 987 and body["invalid_count"] == len(body["errors"]) > 0
    rejected = {e["id"] for e in body["errors"]}
    match = {"correlation_id": body["correlation_id"]}
    raw = read_topic(kafka_settings.kafka_bootstrap_servers, kafka_settings.raw_topic, match, body["valid_count"])
    invalid = read_topic(kafka_settings.kafka_bootstrap_servers, kafka_settings.invalid_topic, match, len(rejected))
    assert sorted(r.key.decode() for r in raw) == sorted(e["id"] for e in events if e["id"] not in rejected)
    assert sorted(r.key.decode() for r in invalid) == sorted(rejected)
    meta = json.loads(raw[0].value)["collector"]
    assert meta["source_ip"] and meta["user_agent"].startswith("python-requests")


def test_deployed_function_uses_the_deploying_shells_settings(
    deployment: dict[str, str], kafka_settings: Settings
) -> None:
    ping = requests.get(f"{deployment['api_url']}/ping", timeout=30).json()
    assert ping["kafka"] == {"bootstrap_servers": kafka_settings.kafka_bootstrap_servers, "reachable": True}


def test_bad_input_and_cors_through_api_gateway(deployment: dict[str, str]) -> None:
    url = f"{deployment['api_url']}/collect"
    malformed = requests.post(url, data="{oops", headers={"Content-Type": "application/json"}, timeout=30)
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["message"]
    beacon = requests.post(
        url,
        data=json.dumps(synthetic_events(3, seed=32)),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
        timeout=30,
    )
    assert beacon.status_code == 200 and beacon.json()["valid_count"] == 3

    origin = f"http://{setting('WEBSITE_BUCKET')}.s3-website.localhost.localstack.cloud:4566"
    preflight = requests.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=30,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin


def test_awslocal_invoke_with_an_api_gateway_proxy_event(
    deployment: dict[str, str], kafka_settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "response.json"
    awslocal = Path(sys.executable).parent / "awslocal"
    result = subprocess.run(
        [
            str(awslocal),
            "lambda",
            "invoke",
            "--function-name",
            deployment["function_name"],
            "--payload",
            f"fileb://{EVENT_FILE}",
            "--log-type",
            "Tail",
            str(out),
        ],
        env={**os.environ, **localstack.aws_environment()},
        capture_output=True,
        text=True,
        check=True,
    )
    meta = json.loads(result.stdout)
    assert meta["StatusCode"] == 200 and "FunctionError" not in meta
    log = base64.b64decode(meta["LogResult"]).decode()
    assert log.startswith("START RequestId") and "REPORT RequestId" in log
    answer = json.loads(out.read_text())
    assert answer["statusCode"] == 200
    body = json.loads(answer["body"])
    assert body["valid_count"] == 1 and body["correlation_id"] in log  # the collector logged the batch
    landed = read_topic(
        kafka_settings.kafka_bootstrap_servers,
        kafka_settings.raw_topic,
        {"correlation_id": body["correlation_id"]},
        expected=1,
    )
    assert [r.key.decode() for r in landed] == ["awslocal-example-1"]


def test_website_serves_the_shop_with_the_api_url(deployment: dict[str, str]) -> None:
    # The website's host name may not resolve here: LocalStack routes on the Host header.
    host = deployment["website_url"].removeprefix("http://")
    index = requests.get(f"{localstack.endpoint_url()}/", headers={"Host": host}, timeout=30)
    assert index.status_code == 200 and "text/html" in index.headers["Content-Type"]
    assert index.text == (REPO / "frontend" / "index.html").read_text()
    config = requests.get(f"{localstack.endpoint_url()}/config.js", headers={"Host": host}, timeout=30)
    assert config.status_code == 200 and "javascript" in config.headers["Content-Type"]
    assert json.dumps({"collectorUrl": deployment["api_url"]}) in config.text


def test_fuzzed_requests_through_api_gateway_get_documented_answers_and_no_5xx(deployment: dict[str, str]) -> None:
    """schemathesis against the OpenAPI document, through API Gateway and the Lambda: as under `chalice local`."""
    result = fuzz(deployment["api_url"], REQUESTS_PER_OPERATION)
    print(f"fuzz API Gateway: {dict(result.requests)}, statuses {dict(result.statuses)}")
    assert sum(result.requests.values()) >= 2000
    assert not [s for s in result.statuses if s >= 500], result.statuses
    assert result.failures == []
