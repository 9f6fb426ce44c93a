"""The fault matrix: each fault inflicted on the suite's supervised stack under traffic through API Gateway (the
last of its tests but `make down`: the services it kills come back, and a LocalStack restart rebuilds the lake).

Each test asserts on the lake afterwards, read with delta-rs (not Spark): every
accepted event is there, none twice. The figures each measures are printed in pytest's summary. The LocalStack
kill comes first: the lake it rebuilds from Kafka is the suite's history so far, not the other faults' traffic too.
(Poison records, the matrix's fifth row, are in tests/spark/test_lake_writer.py.)
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import requests

from generator.sender import Sender
from generator.synthetic import synthetic_events
from lake.reader import LAKE_PREFIX
from pipeline.deployment import deployment_file, read_deployment
from stack import forget, kafka, localstack, spark
from stack.cluster import current
from stack.deploy import spool_depth
from tests.conftest import committed_ids, keyed, lake_ids, report
from tests.faults.conftest import Traffic, kill_group, lake_figures, wait_until
from tests.stacks import Stack

#: How long a killed broker stays down before the supervisor may bring it back: longer than the send timeout and
#: the cooldown (the suite's 3 s and 5 s), so batches are spooled and then skip Kafka.
BROKER_DOWN_S = 12

# Each test waits for recoveries and for the lake: longer than the suite's default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _every_raw_key() -> set[str]:
    from tests.conftest import whole_topic

    kafka_config = current().kafka
    records = whole_topic(kafka_config.bootstrap_servers, kafka_config.raw_topic)
    return {r.key.decode() for r in records if r.key is not None}


def test_a_localstack_killed_comes_back_with_the_same_api_and_the_lake_whole(suite_stack: Stack) -> None:
    deployment = suite_stack.deployment()
    url = deployment["api_url"]
    before = Traffic(deployment, rate=200, threads=2).start(seed=3).answered(30)
    before.stop()
    assert lake_ids(LAKE_PREFIX, before.accepted, timeout_s=120) == Counter(dict.fromkeys(before.accepted, 1))
    # A customer forgotten before the kill: the rebuild reads their events from the raw topic again, and keeps none.
    customer = f"forgotten-{uuid.uuid4().hex[:8]}"
    theirs = synthetic_events(3, seed=55)
    for event in theirs:
        event["event"]["customer_id"] = customer
    answer = requests.post(f"{url}/collect", json=theirs, headers=keyed(deployment), timeout=60)
    assert answer.status_code == 200 and answer.json()["valid_count"] == 3, answer.text
    forgotten_ids = {e["id"] for e in theirs}
    assert lake_ids(LAKE_PREFIX, forgotten_ids) == Counter(dict.fromkeys(forgotten_ids, 1))
    forget.forget([customer])
    # Everything the lake holds now, of every earlier test of the suite too: none of it may be missing after.
    held = set(committed_ids(LAKE_PREFIX))
    assert not held & forgotten_ids

    record = deployment_file()
    recorded = record.stat().st_mtime
    kill_group(localstack.service().pid())
    killed = time.monotonic()
    answering = wait_until(lambda: requests.get(f"{url}/ping", timeout=5).status_code == 200, 300, every_s=1)
    # The supervisor's redeploy ends after the API answers: it then applies the functions' settings, which replaces
    # their running environments (an invocation under way there gets a 502, which clients retry), and records itself.
    redeployed = wait_until(lambda: record.stat().st_mtime > recorded, 300)
    after = Traffic(deployment, rate=200, threads=2).start(seed=4).answered(30)
    after.stop()
    # The lake came back with LocalStack's S3 empty: rebuilt from Kafka, it holds every event ever accepted.
    everything = held | after.accepted
    landed = lake_ids(LAKE_PREFIX, everything, timeout_s=300)
    report(
        "a. LocalStack SIGKILL",
        {
            "api_answering_again_after_s": answering and round(answering, 1),
            "redeployed_after_answering_s": redeployed and round(redeployed, 1),
            "lake_rebuilt_after_s": round(time.monotonic() - killed, 1),
            "same_api_url": read_deployment()["api_url"] == url,
            "events_in_lake": len(landed),
            "forgotten_customers_rows_after": len(forgotten_ids & set(committed_ids(LAKE_PREFIX))),
            "lost": len(everything - set(landed)),
            "duplicated": sum(1 for n in landed.values() if n > 1),
        },
    )
    assert answering is not None, "the API did not answer again"
    assert redeployed is not None, "the supervisor did not record its redeploy"
    assert read_deployment()["api_url"] == url
    assert set(after.statuses) == {200}
    assert before.accepted | after.accepted <= _every_raw_key()
    assert landed == Counter(dict.fromkeys(everything, 1))
    assert not forgotten_ids & set(committed_ids(LAKE_PREFIX))


def test_b_broker_killed_under_load_every_answer_is_200_or_202_and_nothing_is_lost(suite_stack: Stack) -> None:
    deployment = suite_stack.deployment()
    traffic = Traffic(deployment, rate=500).start(seed=1).answered(40)
    suite_stack.cli("hold", "kafka")  # down for BROKER_DOWN_S, then the supervisor's to bring back
    kill_group(kafka.service().pid())
    killed = time.monotonic()
    # A batch larger than an SQS message holds: it waits in the spool bucket, its message pointing there.
    large = synthetic_events(987, seed=6)
    url = f"{deployment['api_url']}/collect"
    large_answer = requests.post(url, json=large, headers=keyed(deployment), timeout=60)
    deepest = 0
    while time.monotonic() - killed < BROKER_DOWN_S:
        deepest = max(deepest, sum(spool_depth() or (0, 0)))
        time.sleep(0.5)
    suite_stack.cli("release", "kafka")
    traffic.stop()  # what comes while the broker starts again is spooled as before: the load has made its point
    back_after = wait_until(lambda: kafka.service().pid() is not None and kafka.topic_counts(), 120)
    # Batches to the broker again, after it is back, while the spool drains.
    after = Traffic(deployment, rate=500).start(seed=7).answered(40)
    after.stop()
    drained_after = wait_until(lambda: spool_depth() == (0, 0), 180, every_s=1)

    sent = traffic.accepted | after.accepted
    accepted = sent | ({e["id"] for e in large} - {e["id"] for e in large_answer.json()["errors"]})
    landed = lake_ids(LAKE_PREFIX, accepted, timeout_s=240)
    report(
        "b. broker SIGKILL, 20 s down",
        {
            "answers": dict(traffic.statuses),
            "answers_once_back": dict(after.statuses),
            "accepted": len(sent),
            "longest_wait_s": round(max(traffic.longest_wait_s, after.longest_wait_s), 1),
            "spool_peak_batches": deepest,
            "broker_back_after_release_s": back_after and round(back_after, 1),
            "spool_drained_after_broker_back_s": drained_after and round(drained_after, 1),
            "lost": len(accepted - set(landed)),
            "duplicated": sum(1 for n in landed.values() if n > 1),
        },
    )
    assert set(traffic.statuses) <= {200, 202} and traffic.statuses[202] > 0, traffic.statuses
    assert set(after.statuses) <= {200, 202}, after.statuses
    assert large_answer.status_code == 202 and large_answer.json()["status"] == "buffered"
    assert drained_after is not None, "the spool did not drain"
    assert landed == Counter(dict.fromkeys(accepted, 1))


def test_c_lake_writer_killed_mid_batch_loses_and_repeats_nothing(suite_stack: Stack) -> None:
    """Under traffic through API Gateway: the lake writer killed (possibly between writing files and committing
    them) and brought back by the supervisor. Every event once in the lake, and a resend after the restart of events
    sent before it lands once too. (Its graceful stop and start are tests/faults/test_cluster.py's `make down` and
    `make up`.)"""
    deployment = suite_stack.deployment()
    sender = Sender(deployment["api_url"], deployment["write_keys"]["generator"])
    early = synthetic_events(150, seed=46)
    sender.post(early)
    early_ids = {e["id"] for e in early}
    assert lake_ids(LAKE_PREFIX, early_ids) == Counter(dict.fromkeys(early_ids, 1))

    # Light traffic (the fault is the writer's, not the collector's): the stack's two cores go to the restart.
    traffic = Traffic(deployment, rate=200, threads=2).start(seed=2).answered(60)
    before = spark.service().pid()
    kill_group(before)
    killed = time.monotonic()
    traffic.answered(30).stop()  # accepted while the lake writer is away; then its restart has the cores
    away = time.monotonic() - killed
    back = wait_until(lambda: spark.service().pid() not in (None, before) and spark.progress(), 240)
    # Nothing of the first send is in the restarted job's memory but what its checkpoint kept.
    sender.post(early)
    wanted = traffic.accepted | early_ids
    landed = lake_ids(LAKE_PREFIX, wanted, timeout_s=240)
    report(
        "c. lake writer SIGKILL",
        {
            **lake_figures(traffic, landed),
            "back_with_progress_after_kill_s": back and round(away + back, 1),
            "lake_whole_after_kill_s": round(time.monotonic() - killed, 1),
        },
    )
    assert back is not None, "the supervisor did not bring the lake writer back"
    assert set(traffic.statuses) == {200}
    assert len(traffic.accepted) >= 2000
    assert landed == Counter(dict.fromkeys(wanted, 1))


def _collector_processes(function: str) -> list[int]:
    found = []
    for pid in localstack.runtime_processes():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"AWS_LAMBDA_FUNCTION_NAME={function}".encode() in environ:
            found.append(pid)
    return found


def waiting_connections(pid: int) -> int:
    """Connections waiting to be accepted on a process's listening TCP sockets (an invocation sent to a runtime that
    cannot answer waits there): /proc/net/tcp's receive queue of a socket in LISTEN state is its accept queue."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    waiting = 0
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
            waiting += int(fields[4].split(":")[1], 16)
    return waiting


def test_d_lambda_killed_mid_invocation_the_retry_lands_once(suite_stack: Stack) -> None:
    deployment = suite_stack.deployment()
    url, function = deployment["api_url"], deployment["function_name"]
    requests.get(f"{url}/ping", timeout=30)  # a warm environment to freeze
    frozen = _collector_processes(function)
    assert frozen, "no warm collector process"
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)  # the next invocation reaches a process that cannot answer
    events = synthetic_events(500, seed=5)
    sender = Sender(url, deployment["write_keys"]["generator"])
    answer: dict = {}
    posting = threading.Thread(target=lambda: answer.update(sender.post(events)))
    posting.start()
    # The invocation has reached a frozen environment: a connection waits in its listening socket's queue.
    assert wait_until(lambda: any(waiting_connections(pid) for pid in frozen), 60, every_s=0.05) is not None
    for pid in frozen:
        os.kill(pid, signal.SIGKILL)
    posting.join(timeout=120)
    accepted = {e["id"] for e in events} - {e["id"] for e in answer.get("errors", [])}
    landed = lake_ids(LAKE_PREFIX, accepted, timeout_s=120)
    report(
        "d. Lambda process SIGKILL mid-invocation",
        {
            "killed_processes": len(frozen),
            "client_retries": sender.totals.retried,
            "final_status": answer.get("status"),
            "lost": len(accepted - set(landed)),
            "duplicated": sum(1 for n in landed.values() if n > 1),
        },
    )
    assert sender.totals.retried >= 1, "the kill did not interrupt the invocation"
    assert answer.get("status") == "success"
    assert landed == Counter(dict.fromkeys(accepted, 1))
