"""The fault matrix: each fault inflicted on a running, supervised stack under traffic through API Gateway.

Each test asserts on the lake afterwards, read with delta-rs (not Spark): every
accepted event is there, none twice. The figures each measures are printed in pytest's summary.
(Poison records, the matrix's fifth row, are in tests/spark/test_lake_writer.py.)
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from chalicelib.contract import read_deployment
from chalicelib.settings import Settings
from generator.sender import Sender
from generator.synthetic import synthetic_events
from lake.reader import LAKE_PREFIX
from stack import kafka, localstack, spark
from stack.deploy import spool_depth
from tests.conftest import keyed, lake_ids, report
from tests.faults.conftest import Stack, Traffic, kill_group, lake_figures, wait_until

# Each test waits for recoveries and for the lake: longer than the suite's default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_a_broker_killed_under_load_every_answer_is_200_or_202_and_nothing_is_lost(fault_stack: Stack) -> None:
    traffic = Traffic(fault_stack.deployment, rate=500).start(seed=1)
    time.sleep(5)
    fault_stack.stack("hold", "kafka")  # down for 20 s, then the supervisor's to bring back
    kill_group(kafka.service().pid())
    killed = time.monotonic()
    # A batch larger than an SQS message holds: it waits in the spool bucket, its message pointing there.
    large = synthetic_events(987, seed=6)
    url = f"{fault_stack.deployment['api_url']}/collect"
    large_answer = requests.post(url, json=large, headers=keyed(fault_stack.deployment), timeout=60)
    deepest = 0
    while time.monotonic() - killed < 20:
        deepest = max(deepest, sum(spool_depth() or (0, 0)))
        time.sleep(1)
    fault_stack.stack("release", "kafka")
    back_after = wait_until(lambda: kafka.service().pid() is not None and kafka.topic_counts(Settings.from_env()), 120)
    time.sleep(10)
    traffic.stop()
    drained_after = wait_until(lambda: spool_depth() == (0, 0), 180, every_s=1)

    accepted = traffic.accepted | ({e["id"] for e in large} - {e["id"] for e in large_answer.json()["errors"]})
    landed = lake_ids(LAKE_PREFIX, accepted, timeout_s=240)
    report(
        "a. broker SIGKILL, 20 s down",
        {
            "answers": dict(traffic.statuses),
            "accepted": len(traffic.accepted),
            "longest_wait_s": round(traffic.longest_wait_s, 1),
            "spool_peak_batches": deepest,
            "broker_back_after_release_s": back_after and round(back_after, 1),
            "spool_drained_after_broker_back_s": drained_after and round(drained_after, 1),
            "lost": len(accepted - set(landed)),
            "duplicated": sum(1 for n in landed.values() if n > 1),
        },
    )
    assert set(traffic.statuses) <= {200, 202} and traffic.statuses[202] > 0, traffic.statuses
    assert large_answer.status_code == 202 and large_answer.json()["status"] == "buffered"
    assert drained_after is not None, "the spool did not drain"
    assert landed == Counter(dict.fromkeys(accepted, 1))


def test_b_lake_writer_killed_mid_batch_comes_back_by_itself(fault_stack: Stack) -> None:
    traffic = Traffic(fault_stack.deployment, rate=300, threads=2).start(seed=2)
    time.sleep(6)
    before = spark.service().pid()
    kill_group(before)
    killed = time.monotonic()
    back = wait_until(lambda: spark.service().pid() not in (None, before) and spark.progress(), 240)
    time.sleep(5)
    traffic.stop()
    landed = lake_ids(LAKE_PREFIX, traffic.accepted, timeout_s=240)
    report(
        "b. lake writer SIGKILL",
        {
            **lake_figures(traffic, landed),
            "back_with_progress_after_s": back and round(back, 1),
            "lake_whole_after_kill_s": round(time.monotonic() - killed, 1),
        },
    )
    assert back is not None, "the supervisor did not bring the lake writer back"
    assert set(traffic.statuses) == {200}
    assert landed == Counter(dict.fromkeys(traffic.accepted, 1))


def _every_raw_id() -> list[str]:
    from tests.conftest import read_topic

    settings = Settings.from_env()
    return [r.key.decode() for r in read_topic(settings.kafka_bootstrap_servers, settings.raw_topic, {}, 10**9, 10)]


def test_c_localstack_killed_comes_back_with_the_same_api_and_the_lake_whole(fault_stack: Stack) -> None:
    url = fault_stack.deployment["api_url"]
    before = Traffic(fault_stack.deployment, rate=200, threads=2).start(seed=3)
    time.sleep(5)
    before.stop()
    assert lake_ids(LAKE_PREFIX, before.accepted, timeout_s=120) == Counter(dict.fromkeys(before.accepted, 1))

    kill_group(localstack.service().pid())
    killed = time.monotonic()
    answering = wait_until(lambda: requests.get(f"{url}/ping", timeout=5).status_code == 200, 300, every_s=1)
    after = Traffic(fault_stack.deployment, rate=200, threads=2).start(seed=4)
    time.sleep(5)
    after.stop()
    # The lake came back with LocalStack's S3 empty: rebuilt from Kafka, it holds every event ever accepted.
    everything = set(_every_raw_id())
    landed = lake_ids(LAKE_PREFIX, everything, timeout_s=300)
    report(
        "c. LocalStack SIGKILL",
        {
            "api_answering_again_after_s": answering and round(answering, 1),
            "lake_rebuilt_after_s": round(time.monotonic() - killed, 1),
            "same_api_url": read_deployment()["api_url"] == url,
            "events_in_lake": len(landed),
            "lost": len(everything - set(landed)),
            "duplicated": sum(1 for n in landed.values() if n > 1),
        },
    )
    assert answering is not None, "the API did not answer again"
    assert read_deployment()["api_url"] == url
    assert set(after.statuses) == {200}
    assert before.accepted | after.accepted <= everything
    assert landed == Counter(dict.fromkeys(everything, 1))


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


def test_d_lambda_killed_mid_invocation_the_retry_lands_once(fault_stack: Stack) -> None:
    url, function = fault_stack.deployment["api_url"], fault_stack.deployment["function_name"]
    requests.get(f"{url}/ping", timeout=30)  # a warm environment to freeze
    frozen = _collector_processes(function)
    assert frozen, "no warm collector process"
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)  # the next invocation reaches a process that cannot answer
    events = synthetic_events(500, seed=5)
    sender = Sender(url, fault_stack.deployment["write_keys"]["generator"])
    answer: dict = {}
    posting = threading.Thread(target=lambda: answer.update(sender.post(events)))
    posting.start()
    time.sleep(2)
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
