"""The collector's AWS-touching logic against moto's AWS (`mock_aws`), in milliseconds: the write keys read from SSM
and their cache, the spool's SQS message and its S3 pointer, the drainer's decoding, the SASL secret read. The same
code runs against LocalStack in tests/localstack and tests/faults."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.drainer import Drainer
from chalicelib.sinks import Delivery, Record, SinkUnavailable
from chalicelib.sinks.kafka import sasl_credentials
from chalicelib.sinks.memory import MemorySink
from chalicelib.sinks.spool import MAX_INLINE_BYTES, SqsSpool, decode_batch
from chalicelib.write_keys import MISS_RELOAD_S, WriteKeys, WriteKeysUnavailable
from pipeline.config import Config

REGION = "eu-west-1"
CONFIG = Config.from_env({"SPOOL_QUEUE": "spool-q", "SPOOL_BUCKET": "spool-bucket.test", "WRITE_KEYS_CACHE_S": "60"})

Clients = Callable[[str], Any]


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clients]:
    """boto3 clients of moto's AWS (the suite's LocalStack endpoint left out of this test's environment)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "moto")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "moto")
    with mock_aws():
        clients: dict[str, Any] = {}
        yield lambda name: clients.setdefault(name, boto3.client(name, region_name=REGION))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def put_keys(aws: Clients, keys: dict[str, list[str]]) -> None:
    value = json.dumps({"keys": {k: {"packages": p} for k, p in keys.items()}})
    aws("ssm").put_parameter(
        Name=CONFIG.collector.write_keys_parameter, Value=value, Type="SecureString", Overwrite=True
    )


def write_keys(aws: Clients, clock: Clock) -> WriteKeys:
    collector = CONFIG.collector
    return WriteKeys(collector.write_keys_parameter, collector.write_keys_cache_s, lambda: aws("ssm"), clock=clock)


def test_the_keys_come_from_the_secure_parameter_and_a_revoked_key_works_until_the_cache_expires(aws: Clients) -> None:
    put_keys(aws, {"shop-1": ["acme.shop.web"]})
    clock = Clock()
    keys = write_keys(aws, clock)
    found = keys.lookup("shop-1")
    assert found is not None and found.allows("acme.shop.web") and not found.allows("acme.other")
    put_keys(aws, {})  # revoked
    clock.now += CONFIG.collector.write_keys_cache_s - 1
    assert keys.lookup("shop-1") is not None  # still cached
    clock.now += 1
    assert keys.lookup("shop-1") is None


def test_an_unknown_key_reloads_the_keys_at_most_every_few_seconds(aws: Clients) -> None:
    put_keys(aws, {"shop-1": ["acme.shop.web"]})
    clock = Clock()
    keys = write_keys(aws, clock)
    assert keys.lookup("new-key") is None
    put_keys(aws, {"shop-1": ["acme.shop.web"], "new-key": ["*"]})
    clock.now += MISS_RELOAD_S - 0.5
    assert keys.lookup("new-key") is None  # too soon for another reload
    clock.now += 0.5
    assert keys.lookup("new-key") is not None


def test_a_missing_parameter_is_unavailable_but_loaded_keys_outlive_an_outage(aws: Clients) -> None:
    clock = Clock()
    keys = write_keys(aws, clock)
    with pytest.raises(WriteKeysUnavailable, match="ParameterNotFound"):
        keys.lookup("shop-1")
    put_keys(aws, {"shop-1": ["acme.shop.web"]})
    assert keys.lookup("shop-1") is not None
    aws("ssm").delete_parameter(Name=CONFIG.collector.write_keys_parameter)
    clock.now += 3600
    assert keys.lookup("shop-1") is not None  # the last keys, until SSM answers again


def spool_of(aws: Clients) -> SqsSpool:
    aws("sqs").create_queue(QueueName=CONFIG.collector.spool_queue)
    aws("s3").create_bucket(
        Bucket=CONFIG.collector.spool_bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return SqsSpool(CONFIG.collector, aws)


def received(aws: Clients) -> list[str]:
    url = aws("sqs").get_queue_url(QueueName=CONFIG.collector.spool_queue)["QueueUrl"]
    messages = aws("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [m["Body"] for m in messages]


def test_a_small_batch_is_one_sqs_message_and_a_large_one_a_pointer_to_s3(aws: Clients) -> None:
    spool = spool_of(aws)
    small = [Record("raw", b"e-1", b'{"id": "e-1"}'), Record("invalid", None, b'{"reason": "r"}')]
    large = [Record("raw", f"e-{n}".encode(), b"x" * 1024) for n in range(MAX_INLINE_BYTES // 1024)]
    assert spool.publish(small) is Delivery.BUFFERED
    assert spool.publish(large) is Delivery.BUFFERED
    inline, pointer = (json.loads(body) for body in received(aws))
    assert decode_batch(inline["inline"]) == small
    location = pointer["s3"]
    assert location["bucket"] == CONFIG.collector.spool_bucket and location["key"].startswith("spool/")
    stored = aws("s3").get_object(Bucket=location["bucket"], Key=location["key"])["Body"].read()
    assert decode_batch(stored) == large


def test_without_its_queue_the_spool_refuses(aws: Clients) -> None:
    with pytest.raises(SinkUnavailable, match="spool did not take the batch"):
        SqsSpool(CONFIG.collector, aws).publish([Record("raw", b"k", b"v")])


def test_the_drainer_publishes_both_kinds_of_message_and_drops_what_holds_no_batch(aws: Clients) -> None:
    spool = spool_of(aws)
    small = [Record("raw", b"e-1", b"one")]
    large = [Record("raw", f"e-{n}".encode(), b"y" * 2048) for n in range(MAX_INLINE_BYTES // 2048 + 1)]
    gone = [Record("raw", f"g-{n}".encode(), b"z" * 2048) for n in range(MAX_INLINE_BYTES // 2048 + 1)]
    for batch in (small, large, gone):
        spool.publish(batch)
    bodies = received(aws)
    for body in bodies:
        location = json.loads(body).get("s3")
        if (
            location
            and decode_batch(aws("s3").get_object(Bucket=location["bucket"], Key=location["key"])["Body"].read())
            == gone
        ):
            aws("s3").delete_object(Bucket=location["bucket"], Key=location["key"])  # no retry could bring it back

    kafka = MemorySink()
    published = Drainer(kafka, aws).drain([*bodies, "not json", json.dumps({"unknown": 1})])
    assert sorted(kafka.records) == sorted(small + large) and published == len(small + large)
    # A drained batch's object is deleted once Kafka has it.
    assert aws("s3").list_objects_v2(Bucket=CONFIG.collector.spool_bucket)["KeyCount"] == 0


def test_a_refused_drain_keeps_the_large_batch_for_the_next_try(aws: Clients) -> None:
    spool = spool_of(aws)
    large = [Record("raw", f"e-{n}".encode(), b"y" * 2048) for n in range(MAX_INLINE_BYTES // 2048 + 1)]
    spool.publish(large)
    bodies = received(aws)
    with pytest.raises(SinkUnavailable):
        Drainer(MemorySink(down=True), aws).drain(bodies)
    assert aws("s3").list_objects_v2(Bucket=CONFIG.collector.spool_bucket)["KeyCount"] == 1
    kafka = MemorySink()
    Drainer(kafka, aws).drain(bodies)
    assert kafka.records == large


def test_the_sasl_user_comes_from_the_secret_and_a_secret_of_another_shape_is_named(aws: Clients) -> None:
    arn = aws("secretsmanager").create_secret(Name="AmazonMSK_t", SecretString='{"username": "u", "password": "p"}')
    kafka = Config.from_env({"KAFKA_SASL_SECRET_ARN": arn["ARN"]}).kafka
    assert sasl_credentials(kafka, aws)() == ("u", "p")
    odd = aws("secretsmanager").create_secret(Name="AmazonMSK_odd", SecretString='{"user": "u"}')["ARN"]
    with pytest.raises(SinkUnavailable, match=r"AmazonMSK_odd.* cannot be read"):
        sasl_credentials(Config.from_env({"KAFKA_SASL_SECRET_ARN": odd}).kafka, aws)()
    missing = arn["ARN"].replace("AmazonMSK_t", "AmazonMSK_missing")
    with pytest.raises(SinkUnavailable, match="cannot be read"):
        sasl_credentials(Config.from_env({"KAFKA_SASL_SECRET_ARN": missing}).kafka, aws)()
    # Without a secret, the configured user and password.
    plain = Config.from_env({"KAFKA_SASL_USERNAME": "me", "KAFKA_SASL_PASSWORD": "pw"}).kafka
    assert sasl_credentials(plain, aws)() == ("me", "pw")
