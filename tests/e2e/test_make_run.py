"""`make run`'s path end to end: the suite stack is started by `make run`'s command on a fresh runtime folder (Kafka,
LocalStack, `chalice local`, the lake writer and the supervisor started, the collector and the shop deployed,
synthetic traffic sent through API Gateway, the lake waited for, the report written), and this checks what it said
and what it landed, read back by a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from generator.synthetic import synthetic_events
from tests.conftest import REPO
from tests.stacks import FIRST_RUN_EVENTS, FIRST_RUN_INVALID_SHARE, FIRST_RUN_SEED, Stack

pytestmark = pytest.mark.slow


def _read_back(stack: Stack, ids: set[str]) -> dict[str, list[str]]:
    """This run's ids in the raw and invalid topics and in the two lake tables, read by a separate process."""
    script = """
import json, sys
from pipeline.config import load
from lake.reader import INVALID_PREFIX, LAKE_PREFIX, read
from tests.conftest import whole_topic
ids, kafka = set(json.load(sys.stdin)), load().kafka
keys = lambda topic: [r.key.decode() for r in whole_topic(kafka.bootstrap_servers, topic)]
mine = lambda found: [i for i in found if i in ids]
table = lambda prefix: read(prefix, columns=["id"]).column("id").to_pylist()
print(json.dumps({"raw": mine(keys(kafka.raw_topic)), "invalid": mine(keys(kafka.invalid_topic)),
                  "lake": mine(table(LAKE_PREFIX)), "lake_invalid": mine(table(INVALID_PREFIX))}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(sorted(ids)), env=stack.env, cwd=REPO,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def test_make_run_lands_every_event_on_a_fresh_stack(suite_stack: Stack) -> None:
    run = suite_stack.first_run
    assert run is not None and run.returncode == 0
    assert "every accepted event is in the lake" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    sent = synthetic_events(
        FIRST_RUN_EVENTS, seed=FIRST_RUN_SEED, invalid_share=FIRST_RUN_INVALID_SHARE, start=suite_stack.first_run_start
    )
    found = _read_back(suite_stack, {e["id"] for e in sent})
    # Each event of the run once in the topics, each accepted one once in the lake, each rejected one in its table.
    assert len(found["raw"]) + len(found["invalid"]) == FIRST_RUN_EVENTS
    assert Counter(found["lake"]) == Counter(set(found["raw"])) == Counter(found["raw"])
    assert sorted(found["lake_invalid"]) == sorted(found["invalid"]) and found["invalid"]

    reports = list((suite_stack.runtime / "report").glob("*.html"))
    assert reports and "<svg" in reports[0].read_text()

    # `make status` reads each topic's replication and retention from the broker, and names every service.
    status = suite_stack.cli("status").stdout
    single = "replication 1 (in sync 1, under-replicated partitions 0), min.insync 1, retention forever"
    kafka = suite_stack.config.kafka
    assert all(f"  {topic}: " in status for topic in kafka.topics), status
    assert f"  {kafka.raw_topic}: " in status and single in status.split(f"  {kafka.raw_topic}: ")[1].splitlines()[0]
    assert "registry: running" in status and "kafka-ui: running" in status
