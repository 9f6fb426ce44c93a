"""Fuzzing a running collector with schemathesis against its OpenAPI document (schemas/collector.openapi.json).

Every operation gets requests generated from the document, valid ones and ones that break it (positive and
negative modes); each answer is checked: no 5xx, a documented status code, the documented content type and body.
One check is left out on purpose: negative_data_rejection wants any schema-violating request refused whole,
where the collector accepts a batch's valid events and refuses the others one by one (200 `partial`).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    FailureGroup,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline.config import Config, load
from stack import chalice_local, kafka, localstack
from stack.process import free_port
from tests.conftest import REPO

DOCUMENT = REPO / "schemas" / "collector.openapi.json"
#: At most this many requests an operation (FUZZ_REQUESTS, at least 1,000): POST /collect takes them all;
#: OPTIONS /collect and GET /ping, which take no input, one each (hypothesis stops when there is nothing to vary).
REQUESTS_PER_OPERATION = max(load().tests.fuzz_requests, 1000)
#: The fuzzed collectors publish here, not to the pipeline's topics: the lake writer never files the thousands of
#: days their generated timestamps span.
FUZZ_TOPICS = {
    "raw_topic": "fuzz.clickstream.raw.events",
    "invalid_topic": "fuzz.clickstream.invalid.events",
    "latest_topic": "fuzz.clickstream.latest.events",
}
TOPIC_VARIABLES = {
    "raw_topic": "KAFKA_RAW_TOPIC",
    "invalid_topic": "KAFKA_INVALID_TOPIC",
    "latest_topic": "KAFKA_LATEST_TOPIC",
}


def on_fuzz_topics(config: Config) -> Config:
    fuzzed = config.replace(kafka=FUZZ_TOPICS)
    kafka.create_topics(fuzzed)
    return fuzzed


@contextlib.contextmanager
def chalice_local_on_fuzz_topics(config: Config) -> Iterator[str]:
    """A `chalice local` of its own (the dev stage, as `make up` runs it) publishing to the fuzz topics; its URL."""
    fuzzed = on_fuzz_topics(config).replace(collector={"port": free_port()})
    chalice_local.start(fuzzed, name="chalice-local-fuzz")
    try:
        yield chalice_local.url(fuzzed)
    finally:
        chalice_local.stop(fuzzed, name="chalice-local-fuzz")


@contextlib.contextmanager
def deployed_on_fuzz_topics(config: Config, function_name: str) -> Iterator[None]:
    """The deployed collector publishing to the fuzz topics inside (its variables changed, then restored)."""
    on_fuzz_topics(config)
    client = localstack.client("lambda", config)
    before = client.get_function_configuration(FunctionName=function_name).get("Environment", {}).get("Variables", {})

    def configure(variables: dict[str, str]) -> None:
        client.update_function_configuration(FunctionName=function_name, Environment={"Variables": variables})
        localstack.wait_for_function(client, function_name)

    configure({**before, **{TOPIC_VARIABLES[k]: v for k, v in FUZZ_TOPICS.items()}})
    try:
        yield
    finally:
        configure(before)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


#: Requests in flight at once: the collector's answer, not the generation, is most of a request's time.
CONCURRENCY = 4


@dataclass
class FuzzResult:
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, label: str, status: int, failure: str | None) -> None:
        with self._lock:
            self.requests[label] += 1
            self.statuses[status] += 1
            if failure is not None and len(self.failures) < 20:
                self.failures.append(f"{label} -> {status}: {failure[:400]}")


def fuzz(base_url: str, requests_per_operation: int, headers: dict[str, str] | None = None) -> FuzzResult:
    """`requests_per_operation` generated requests to each operation of the document, valid and breaking ones,
    each with `headers` (a write key), CONCURRENCY at a time."""
    result = FuzzResult()

    def send(label: str, case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers or {}, timeout=60)
        try:
            case.validate_response(response, checks=CHECKS)
            failure = None
        except (AssertionError, FailureGroup) as failed:  # collected: one run reports every kind of failure
            failure = str(failed)
        result.record(label, response.status_code, failure)

    with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
        sent = [pool.submit(send, label, case) for label, cases in generated(requests_per_operation) for case in cases]
        for future in sent:
            future.result()
    return result


@functools.cache
def generated(requests: int) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """Each operation's generated requests: made once (derandomized, so the same for every target) and shared by
    the fuzzed targets."""
    schema = schemathesis.openapi.from_path(DOCUMENT)
    return tuple((o.label, _cases(o, requests)) for o in (o.ok() for o in schema.get_all_operations()))


def _cases(operation: Any, requests: int) -> tuple[Any, ...]:
    strategy = st.one_of(operation.as_strategy(mode) for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE))
    cases: list[Any] = []

    @settings(
        max_examples=requests,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[p for p in settings.default.phases if p.name != "shrink"],
    )
    @given(case=strategy)
    def collect(case: Any) -> None:
        cases.append(case)

    collect()
    return tuple(cases)
