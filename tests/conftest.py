"""Shared fixtures: a real Kafka broker started by the suite, and a reader for what landed in it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
APP_DIR = REPO / "chalice_app"
# `app.py` is a top-level module of the Chalice project, as Chalice itself imports it.
sys.path.insert(0, str(APP_DIR))
# The lake writer is a spark-submit script, not a package: its plan functions are tested in-process.
sys.path.insert(0, str(REPO / "spark"))


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's own runtime folder (PIDs, logs, service data), so a developer's stack is untouched."""
    path = tmp_path_factory.mktemp("runtime")
    os.environ["CLICKSTREAM_RUNTIME"] = str(path)
    return path


@pytest.fixture(scope="session")
def kafka_settings(runtime: Path) -> Iterator[Any]:
    """A Kafka broker of the suite's own, on free ports with fresh data."""
    from chalicelib import dependencies
    from chalicelib.settings import Settings
    from stack import kafka
    from stack.process import free_port

    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    client_port, controller_port, sasl_port = ports
    os.environ.update(
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{client_port}",
        KAFKA_CONTROLLER_PORT=str(controller_port),
        KAFKA_SASL_SSL_PORT=str(sasl_port),
    )
    dependencies.reset()
    settings = Settings.from_env()
    kafka.start(settings)
    try:
        yield settings
    finally:
        kafka.stop()
        dependencies.reset()


@pytest.fixture(scope="session")
def chalice_local_url(kafka_settings: Any) -> Iterator[str]:
    """The collector under `chalice local` (as `make up` runs it), on a free port, against the suite's broker."""
    from stack import chalice_local
    from stack.process import free_port

    # A short send timeout keeps the broker-down cases quick; the default (10 s) suits real use.
    os.environ.update(COLLECTOR_PORT=str(free_port()), KAFKA_SEND_TIMEOUT_S="3")
    chalice_local.start()
    try:
        yield chalice_local.url()
    finally:
        chalice_local.stop()


@pytest.fixture(scope="session")
def localstack_endpoint(runtime: Path) -> Iterator[str]:
    """A LocalStack of the suite's own (host mode, local-process Lambda executor) on a free port."""
    from stack import localstack
    from stack.process import free_port

    os.environ["GATEWAY_LISTEN"] = f"127.0.0.1:{free_port()}"
    os.environ["AWS_ENDPOINT_URL"] = localstack.endpoint_url()
    # A TMPDIR of LocalStack's own, which the executor tests check no function inherits.
    host_tmp = runtime / "localstack-tmpdir"
    host_tmp.mkdir(exist_ok=True)
    previous = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(host_tmp)
    try:
        localstack.start()
    finally:
        if previous is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = previous
    try:
        yield localstack.endpoint_url()
    finally:
        localstack.stop()


@pytest.fixture(scope="session")
def deployment(kafka_settings: Any, localstack_endpoint: str, runtime: Path) -> dict[str, Any]:
    """The collector and the shop deployed by `make deploy`'s script, pointed at the suite's broker."""
    subprocess.run([sys.executable, "-m", "stack.deploy"], check=True, cwd=REPO)
    return json.loads((runtime / "deployment.json").read_text())


def keyed(deployment: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, str]:
    """`headers` with the generator's write key: what a test sends to the deployed collector to be let in."""
    return {**(headers or {}), "X-Write-Key": deployment["write_keys"]["generator"]}


@contextmanager
def running_lake_writer(**overrides: str) -> Iterator[None]:
    """The Spark lake writer (as `make up` runs it) on the suite's broker and LocalStack, with `overrides` on top of
    the suite's environment (another way to Kafka, say), until the block ends."""
    from chalicelib.settings import setting
    from stack import localstack, spark
    from stack.process import free_port

    localstack.ensure_bucket(setting("LAKE_BUCKET"))
    os.environ.update(
        SPARK_UI_PORT=str(free_port()),
        SPARK_TRIGGER="1 second",
        LAKE_COMMIT_INTERVAL="1 second",
        SESSIONS_INTERVAL_S="10",
    )
    spark.start(overrides=overrides)
    try:
        yield
    finally:
        spark.stop()


@pytest.fixture(scope="module")
def lake_writer(kafka_settings: Any, localstack_endpoint: str) -> Iterator[None]:
    """The lake writer for one test module."""
    with running_lake_writer():
        yield


#: The ids of each data file read so far. A Delta data file is never rewritten (a compaction writes new ones and
#: removes the old from the log), so each file is read once in a run: a lake of thousands of day partitions would
#: otherwise be read whole at every poll, tens of seconds each on LocalStack's S3.
_IDS_OF_FILE: dict[str, list[str]] = {}


def _committed_ids(prefix: str) -> list[str]:
    """The ids of the table's current version: the files its log names, each read once."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    from lake.reader import filesystem, table

    found = table(prefix)
    if found is None:
        return []
    files = [uri.split("://", 1)[-1] for uri in found.file_uris()]
    unread = [f for f in files if f not in _IDS_OF_FILE]

    def ids_of(path: str) -> list[str]:
        return pq.read_table(path, columns=["id"], filesystem=filesystem()).column("id").to_pylist()

    with ThreadPoolExecutor(max_workers=8) as pool:
        _IDS_OF_FILE.update(zip(unread, pool.map(ids_of, unread), strict=True))
    return [i for f in files for i in _IDS_OF_FILE[f]]


def lake_ids(prefix: str, wanted: set[str], timeout_s: float = 120) -> Counter[str]:
    """How often each wanted id is in the lake's current version (its log read with delta-rs, its files with
    pyarrow), once all are there (or the timeout passed)."""
    from deltalake.exceptions import DeltaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ids = _committed_ids(prefix)
        except (OSError, DeltaError):  # LocalStack's S3 not answering (yet): the fault tests restart it
            ids = []
        found = Counter(i for i in ids if i in wanted)
        if set(found) >= wanted or time.monotonic() > deadline:
            return found
        time.sleep(1)


@pytest.fixture
def make_function(localstack_endpoint: str) -> Iterator[Callable[..., str]]:
    """Create a Lambda function (python3.11 unless told) from {path: source}; deleted after the test."""
    from tests.localstack.lambda_support import create_function, lambda_client

    client = lambda_client()
    created: list[str] = []

    def make(name: str, files: dict[str, str], **extra: Any) -> str:
        create_function(client, name, files, **extra)
        created.append(name)
        return name

    yield make
    for name in created:
        try:
            client.delete_function(FunctionName=name)
        except client.exceptions.ResourceNotFoundException:
            pass


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
                    try:
                        value = json.loads(record.value or b"null")
                    except ValueError:  # a poison record of the lake tests: not the collector's
                        continue
                    meta = value.get("collector", {}) if isinstance(value, dict) else None
                    if not isinstance(meta, dict):
                        continue
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


FIGURES: dict[str, dict[str, Any]] = {}


def report(name: str, figures: dict[str, Any]) -> None:
    """Keep what a test measured (a fault's losses, the fuzzing's answers, the limiter's rate); pytest prints it at
    the end of the run (and on the terminal now)."""
    FIGURES[name] = figures
    print(f"\n{name}: {figures}", flush=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("measured figures")
        for name, figures in FIGURES.items():
            terminalreporter.write_line(f"{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
