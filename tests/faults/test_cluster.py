"""`CLUSTER=1 make up`: three KRaft brokers (replication 3, min.insync 2) and a Spark standalone master and
worker, the lake writer submitted to it. Faults on the cluster, asserted on the lake read with delta-rs."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from lake.reader import LAKE_PREFIX
from stack import kafka, spark
from stack.paths import runtime_dir
from tests.conftest import lake_ids, report
from tests.faults.conftest import Traffic, kill_group, lake_figures, wait_until
from tests.stacks import Stack, Stacks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cluster_stack(stacks: Stacks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`CLUSTER=1 make up` and `make deploy` on a stack of its own (the suite stack stopped first); down after."""
    with stacks.other(Stack.fresh("cluster", tmp_path_factory.mktemp("cluster-runtime"), clustered=True)) as stack:
        yield stack


def test_the_cluster_runs_replicated_topics_and_the_lake_writer_on_the_master(cluster_stack: Stack) -> None:
    status = cluster_stack.cli("status").stdout
    assert "kafka-3 (pid" in status
    # Read from the brokers, per topic: the replication the node count implies is not taken on trust.
    replicated = "replication 3 (in sync 3, under-replicated partitions 0), min.insync 2"
    assert status.count(replicated) == len(cluster_stack.config.kafka.topics), status
    assert f"lake writer running on {cluster_stack.env['SPARK_MASTER']}" in status
    assert "master running" in status and "worker running" in status
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    settings = cluster_stack.config
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.servers)
    try:
        described = admin.describe_topics([settings.kafka.raw_topic])[0]["partitions"]
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, settings.kafka.raw_topic)])
    finally:
        admin.close()
    assert len(described) == 6 and all(len(p["replica_nodes"]) == 3 for p in described)
    assert configs["topic"][settings.kafka.raw_topic]["min.insync.replicas"]["value"] == "2"
    # The worker runs the job's executor: the application has a folder in the worker's work dir.
    assert list((runtime_dir() / "spark-worker").glob("app-*/*"))


def test_a_broker_killed_under_500_events_per_second_every_answer_is_200_and_the_lake_holds_each_once(
    cluster_stack: Stack,
) -> None:
    victim = kafka.nodes()[1]  # not the first bootstrap address: clients must find the others themselves
    traffic = Traffic(cluster_stack.deployment(), rate=500).start(seed=11).answered(40)
    cluster_stack.cli("hold", victim.name)  # down until the traffic has had its answers, then the supervisor's
    kill_group(victim.service().pid())
    # Fenced after 2 s (broker.session.timeout.ms): 200 answers at 500 events/s span several seconds without it.
    traffic.answered(200)
    cluster_stack.cli("release", victim.name)
    back_after = wait_until(lambda: victim.service().pid() is not None and kafka.under_replicated() == 0, 180)
    traffic.answered(40)
    traffic.stop()

    landed = lake_ids(LAKE_PREFIX, traffic.accepted, timeout_s=240)
    report(
        "cluster: one of three brokers SIGKILL, 15 s down",
        {
            **lake_figures(traffic, landed),
            "longest_wait_s": round(traffic.longest_wait_s, 1),
            "in_sync_again_after_release_s": back_after and round(back_after, 1),
        },
    )
    assert set(traffic.statuses) == {200}, traffic.statuses
    assert back_after is not None, "the broker did not rejoin the ISR"
    assert landed == Counter(dict.fromkeys(traffic.accepted, 1))


def test_the_worker_killed_and_restarted_the_job_recovers(cluster_stack: Stack) -> None:
    driver = spark.service().pid()
    traffic = Traffic(cluster_stack.deployment(), rate=100, threads=2).start(seed=12).answered(20)
    cluster_stack.cli("hold", "spark-worker")
    kill_group(spark.worker_service().pid())
    killed = time.monotonic()
    # The master has noticed: no worker alive (its executor went with it).
    assert wait_until(lambda: spark.alive_workers() == 0, 60) is not None
    cluster_stack.cli("release", "spark-worker")
    batch_at_release = max((p["batch"] for p in spark.progress().values()), default=-1)
    # Recovered: a new executor on the restarted worker runs batches again, in the same job.
    recovered = wait_until(lambda: max(p["batch"] for p in spark.progress().values()) > batch_at_release + 2, 240)
    traffic.stop()
    landed = lake_ids(LAKE_PREFIX, traffic.accepted, timeout_s=240)
    report(
        "cluster: Spark worker SIGKILL, 10 s down",
        {
            **lake_figures(traffic, landed),
            "batches_again_after_release_s": recovered and round(recovered, 1),
            "lake_whole_after_kill_s": round(time.monotonic() - killed, 1),
        },
    )
    assert recovered is not None, "no batch ran after the worker came back"
    assert spark.service().pid() == driver  # the job itself went on: it was not restarted
    assert set(traffic.statuses) == {200}
    assert landed == Counter(dict.fromkeys(traffic.accepted, 1))
