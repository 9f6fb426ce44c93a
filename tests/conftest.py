"""Shared fixtures: a real Kafka broker started by the suite, and a reader for what landed in it."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
APP_DIR = REPO / "chalice_app"
# `app.py` is a top-level module of the Chalice project, as Chalice itself imports it.
sys.path.insert(0, str(APP_DIR))


@pytest.fixture(scope="session")
def kafka_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Kafka broker of the suite's own, on free ports with fresh data, so a developer's stack is untouched."""
    from chalicelib import service
    from chalicelib.settings import Settings
    from stack import kafka
    from stack.process import free_port

    runtime = tmp_path_factory.mktemp("runtime")
    os.environ.update(
        CLICKSTREAM_RUNTIME=str(runtime),
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",
        KAFKA_CONTROLLER_PORT=str(free_port()),
    )
    service.reset()
    settings = Settings.from_env()
    kafka.start(settings)
    try:
        yield settings
    finally:
        kafka.stop()
        service.reset()


def read_topic(bootstrap: str, topic: str, match: dict[str, Any], expected: int, timeout_s: float = 20) -> list[Any]:
    """Records of `topic` (whole history) whose JSON value contains `match` at its "collector" metadata.

    Reads until `expected` records matched or the timeout passed; returns what it found either way, so a
    test asserts the exact count (too many is a failure too).
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap.split(","), enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        found: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    value = json.loads(record.value)
                    meta = value.get("collector", {})
                    if all(meta.get(k) == v for k, v in match.items()):
                        found.append(record)
            caught_up = all(consumer.position(p) >= end[p] for p in partitions)
            if len(found) >= expected and caught_up:
                break
            if caught_up:
                end = consumer.end_offsets(partitions)
        return found
    finally:
        consumer.close()
