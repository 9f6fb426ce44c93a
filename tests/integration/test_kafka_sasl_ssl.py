"""Kafka over SASL_SSL end to end, on the suite's broker's second listener (SCRAM-SHA-512, the certificate the stack
made): the collector publishes with the user's secret read from Secrets Manager on LocalStack, the lake writer
reads the raw topic and writes the latest topic over the same listener, and the lake (read with delta-rs) holds
every event once. A wrong password is refused, and said to be."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition

from chalicelib.collector import Collector, RequestInfo
from chalicelib.sinks.kafka import KafkaSink, sasl_credentials, security_config
from generator.synthetic import synthetic_events
from lake.reader import LAKE_PREFIX
from pipeline.config import Config
from stack import kafka, kafka_security, localstack, spark
from tests.conftest import lake_ids
from tests.stacks import variant

pytestmark = pytest.mark.slow


#: The variant's name: its topics and tables (tests/stacks.variant).
SASL_VARIANT = "sasl"


@pytest.fixture(scope="module")
def sasl_config(config: Config) -> Config:
    """A client that reaches the suite's broker over SASL_SSL, its secret in Secrets Manager, on topics and lake
    tables of its own (created over the PLAINTEXT listener)."""
    own = variant(config, SASL_VARIANT)
    return own.replace(
        kafka={
            "bootstrap_servers": kafka.sasl_ssl_servers(config),
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_secret_arn": kafka_security.ensure_secret(config),
            "ssl_cafile": str(kafka_security.ensure_tls().ca_file),
            "send_timeout_s": 5.0,
        }
    )


def collector_over_sasl(config: Config) -> Collector:
    return Collector(config, KafkaSink(config.kafka, sasl_credentials(config.kafka, localstack.client)))


def keys_in(settings: Config, topic: str, wanted: set[str]) -> Counter[str]:
    """How often each wanted key is in `topic`, read over SASL_SSL with the same settings."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.servers,
        group_id=None,
        enable_auto_commit=False,
        **security_config(settings.kafka, sasl_credentials(settings.kafka, localstack.client)),
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        found: Counter[str] = Counter()
        while any(consumer.position(p) < end[p] for p in partitions):
            for records in consumer.poll(timeout_ms=1000).values():
                found.update(r.key.decode() for r in records if r.key and r.key.decode() in wanted)
        return found
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def lake_writer_over_sasl(sasl_config: Config) -> Iterator[None]:
    """A second lake writer, named, over SASL_SSL (the user and password read from the secret by the stack)."""
    spark.start(sasl_config, name="spark-sasl")
    try:
        yield
    finally:
        spark.stop("spark-sasl")


def test_events_travel_collector_kafka_lake_and_latest_topic_over_sasl_ssl(
    sasl_config: Config, lake_writer_over_sasl: None
) -> None:
    settings = sasl_config
    events = synthetic_events(200, seed=61)
    outcome = collector_over_sasl(settings).collect(json.dumps(events).encode(), RequestInfo("application/json"))
    assert outcome.status_code == 200 and outcome.body["valid_count"] == 200, outcome.body
    ids = {e["id"] for e in events}
    assert keys_in(settings, settings.kafka.raw_topic, ids) == Counter(dict.fromkeys(ids, 1))
    # The lake writer read them over SASL_SSL, wrote the lake, and fed the latest topic over SASL_SSL.
    assert lake_ids(f"{SASL_VARIANT}/{LAKE_PREFIX}", ids, timeout_s=180) == Counter(dict.fromkeys(ids, 1))
    assert set(keys_in(settings, settings.kafka.latest_topic, ids)) == ids


def test_a_wrong_password_is_refused_with_a_clear_message(sasl_config: Config) -> None:
    user = kafka_security.ensure_tls().username
    settings = sasl_config.replace(
        kafka={"sasl_secret_arn": "", "sasl_username": user, "sasl_password": "not-the-password"}
    )
    body = json.dumps(synthetic_events(1, seed=62)).encode()
    outcome = Collector(settings, KafkaSink(settings.kafka)).collect(body, RequestInfo("application/json"))
    assert outcome.status_code == 503 and outcome.body["valid_count"] == 0, outcome.body
    # The broker's own reason when it arrives before the broker closes the connection, else the handshake named.
    refused = "refused the SASL credentials: .*invalid credentials.*SCRAM-SHA-512"
    failed = "SASL_SSL connection was made .* SASL handshake failed; check the SASL credentials"
    assert re.search(f"{refused}|{failed}", outcome.body["message"]), outcome.body["message"]
