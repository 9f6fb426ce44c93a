"""Kafka over SASL_SSL on the suite's broker's second listener (SCRAM-SHA-512, the certificate the stack made): a
wrong password is refused, and said to be. Events over SASL_SSL end to end (collector, Kafka, the lake writer, the
lake and the latest topic) are tests/spark/test_variant_writer.py's: its lake writer runs over this listener."""

from __future__ import annotations

import json
import re

import pytest

from chalicelib.collector import Collector, RequestInfo
from chalicelib.sinks.kafka import KafkaSink
from generator.synthetic import synthetic_events
from pipeline.config import Config
from stack import kafka_security
from tests.stacks import over_sasl

pytestmark = pytest.mark.slow


def test_a_wrong_password_is_refused_with_a_clear_message(config: Config) -> None:
    user = kafka_security.ensure_tls().username
    settings = over_sasl(config, config).replace(
        kafka={"sasl_secret_arn": "", "sasl_username": user, "sasl_password": "not-the-password"}
    )
    body = json.dumps(synthetic_events(1, seed=62)).encode()
    outcome = Collector(settings, KafkaSink(settings.kafka)).collect(body, RequestInfo("application/json"))
    assert outcome.status_code == 503 and outcome.body["valid_count"] == 0, outcome.body
    # The broker's own reason when it arrives before the broker closes the connection, else the handshake named.
    refused = "refused the SASL credentials: .*invalid credentials.*SCRAM-SHA-512"
    failed = "SASL_SSL connection was made .* SASL handshake failed; check the SASL credentials"
    assert re.search(f"{refused}|{failed}", outcome.body["message"]), outcome.body["message"]
