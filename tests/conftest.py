"""Shared fixtures: the suite stack (a whole stack, as `make run` starts one), its parts, the order the suite runs in,
the environment checks, and readers of what landed in Kafka and in the lake."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import Config
from pipeline.schema_registry import unframed
from tests.stacks import Stack, Stacks, take_environment

REPO = Path(__file__).resolve().parent.parent
APP_DIR = REPO / "chalice_app"
# `app.py` is a top-level module of the Chalice project, as Chalice itself imports it.
sys.path.insert(0, str(APP_DIR))
# The lake writer is a spark-submit script, not a package: its plan functions are tested in-process.
sys.path.insert(0, str(REPO / "spark"))


#: The order the suite runs in: tests without services first (the suite stack boots meanwhile); then those on the
#: suite stack, the cold `make run` first (it asserts on that run) and the faults last (they kill its services); then
#: its `make down`; then the cluster, a stack of its own (at most one whole stack runs at a time). Within a place,
#: pytest's own order.
ORDER = (
    "tests/unit/",
    "tests/spark/test_lake_types.py",
    "tests/spark/test_sessions.py",
    "tests/e2e/test_make_run.py",
    "tests/integration/",
    "tests/localstack/",
    "tests/spark/",
    "tests/browser/",
    "tests/faults/test_fault_matrix.py",
    "tests/e2e/test_make_down.py",
    "tests/faults/test_cluster.py",
)


def _place(item: pytest.Item) -> int:
    path = Path(str(item.fspath)).relative_to(REPO).as_posix()
    return next((n for n, prefix in enumerate(ORDER) if path.startswith(prefix)), len(ORDER))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_place)  # a stable sort: pytest's order within each place


def pytest_collection_finish(session: pytest.Session) -> None:
    """Whether a test of the run (what -m and -k left of it) needs the suite stack: then it boots at once."""
    wanted = any("suite_stack" in getattr(item, "fixturenames", ()) for item in session.items)
    session.config.stash[SUITE_WANTED] = wanted


SUITE_WANTED = pytest.StashKey[bool]()


@pytest.fixture(scope="session", autouse=True)
def stacks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stacks]:
    """The suite stack's settings in this process for the whole session, its services booting in the background if a
    test of the run needs them; every stack stopped at the end."""
    suite = Stack.fresh("suite", tmp_path_factory.mktemp("suite-runtime"))
    managed = Stacks(suite)
    if request.config.stash.get(SUITE_WANTED, False):
        managed.boot_in_background()
    with pytest.MonkeyPatch.context() as environment:
        take_environment(environment, suite.process_environment)
        try:
            yield managed
        finally:
            managed.close()


#: Set by the tools themselves, in the process, for as long as it lives: pytest around each phase of a test, PySpark
#: when its first SparkContext starts, Polars (its jemalloc's) when it is imported.
SET_BY_TOOLS = ("PYTEST_CURRENT_TEST", "SPARK_AUTH_SOCKET_TIMEOUT", "SPARK_BUFFER_SIZE", "_RJEM_MALLOC_CONF")


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k) and k not in SET_BY_TOOLS)


@pytest.fixture(autouse=True)
def environment_unchanged() -> Iterator[None]:
    """No test leaves the environment changed (a fixture of its, monkeypatch, restores what it set)."""
    before = dict(os.environ)
    yield
    changed = _changed(before, dict(os.environ))
    assert not changed, f"the test left these environment variables changed: {changed}"


@pytest.fixture(scope="module", autouse=True)
def module_environment_unchanged() -> Iterator[None]:
    """Nor does a module's fixture."""
    before = dict(os.environ)
    yield
    changed = _changed(before, dict(os.environ))
    assert not changed, f"the module's fixtures left these environment variables changed: {changed}"


@pytest.fixture(scope="module")
def suite_stack(stacks: Stacks) -> Stack:
    """The suite stack, running when a module starts (started by `make run`'s command the first time, brought back by
    its supervisor after a fault module, or started again after the `make down` test)."""
    return stacks.use(stacks.suite)


@pytest.fixture(scope="module")
def config(suite_stack: Stack) -> Config:
    """The suite stack's configuration tree."""
    return suite_stack.config


@pytest.fixture(scope="module")
def runtime(suite_stack: Stack) -> Path:
    return suite_stack.runtime


@pytest.fixture(scope="module")
def chalice_local_url(config: Config) -> str:
    """The collector under the suite stack's `chalice local` (the dev stage: no write key needed)."""
    from stack import chalice_local

    return chalice_local.url(config)


@pytest.fixture(scope="module")
def localstack_endpoint(config: Config) -> str:
    """The suite stack's LocalStack (host mode, the local-process Lambda executor)."""
    from stack import localstack

    return localstack.endpoint_url(config)


@pytest.fixture(scope="module")
def deployment(suite_stack: Stack) -> dict[str, Any]:
    """What `make run` deployed: the collector on Lambda + API Gateway and the shop, on the suite stack's broker."""
    return suite_stack.deployment()


def keyed(deployment: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, str]:
    """`headers` with the generator's write key: what a test sends to the deployed collector to be let in."""
    return {**(headers or {}), "X-Write-Key": deployment["write_keys"]["generator"]}


@pytest.fixture(scope="module")
def lake_writer(suite_stack: Stack) -> None:
    """The suite stack's lake writer (running with the stack), writing the suite stack's lake."""


#: The ids of each data file read so far. A Delta data file is never rewritten (a compaction writes new ones and
#: removes the old from the log), so each file is read once in a run: a lake of thousands of day partitions would
#: otherwise be read whole at every poll, tens of seconds each on LocalStack's S3.
_IDS_OF_FILE: dict[str, list[str]] = {}


def committed_ids(prefix: str) -> list[str]:
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
            ids = committed_ids(prefix)
        except (OSError, DeltaError):  # LocalStack's S3 not answering (yet): the fault tests restart it
            ids = []
        found = Counter(i for i in ids if i in wanted)
        if set(found) >= wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.5)  # a read of the log and of the new files only: cheap beside the commits waited for


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


def record_json(value: bytes | None) -> Any:
    """A record's JSON, in Confluent's wire format (the collector's raw records) or plain (the invalid topic's)."""
    return json.loads(unframed(value or b"")[1] or b"null")


def read_topic(bootstrap: str, topic: str, match: dict[str, Any], expected: int, timeout_s: float = 20) -> list[Any]:
    """Records of `topic` (whole history) whose JSON value contains `match` at its "collector" metadata.

    Reads until `expected` records matched and it has caught up with the end, or the timeout passed; returns what
    it found either way, so a test asserts the exact count (too many is a failure too).
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
                        value = record_json(record.value)
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


def whole_topic(bootstrap: str, topic: str) -> list[Any]:
    """Every collector record of `topic` up to its end as of now: read_topic with no count to wait for, so it returns
    once it has caught up (not at a timeout)."""
    return read_topic(bootstrap, topic, {}, expected=0)


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
