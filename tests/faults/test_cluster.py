"""`CLUSTER=1 LAKE_STORE=s3proxy make up`: three KRaft brokers (replication 3, min.insync 2), a Spark standalone
master and worker with the lake writer submitted to it, and the lake on S3Proxy, a durable store. Faults on the
cluster and on the store (a broker, the worker, LocalStack, S3Proxy, `make down` and `make up` on an evolved
schema), asserted on the lake read with delta-rs. The suite stack keeps the default, the lake on LocalStack's S3
(tests/faults/test_fault_matrix.py kills LocalStack there: the lake is rebuilt from Kafka)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from generator.synthetic import synthetic_events
from lake.reader import LAKE_PREFIX, read
from pipeline.config import Config
from stack import chalice_local, kafka, localstack, s3proxy, spark
from stack.paths import runtime_dir
from stack.process import free_port
from tests.conftest import REPO, committed_ids, lake_ids, read_topic, record_json, report
from tests.faults.conftest import Traffic, kill_group, lake_after, lake_figures, wait_until
from tests.stacks import Stack, StackError, Stacks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cluster_stack(stacks: Stacks, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`CLUSTER=1 LAKE_STORE=s3proxy make up` and `make deploy` on a stack of its own (the suite stack stopped first);
    down after."""
    runtime = tmp_path_factory.mktemp("cluster-runtime")
    with stacks.other(Stack.fresh("cluster", runtime, clustered=True, store="s3proxy")) as stack:
        yield stack


def test_the_cluster_runs_replicated_topics_and_the_lake_writer_on_the_master(cluster_stack: Stack) -> None:
    status = cluster_stack.cli("status").stdout
    assert "kafka-3 (pid" in status
    # Read from the brokers, per topic: the replication the node count implies is not taken on trust.
    replicated = "replication 3 (in sync 3, under-replicated partitions 0), min.insync 2"
    assert status.count(replicated) == len(cluster_stack.config.kafka.topics), status
    assert f"lake writer running on {cluster_stack.env['SPARK_MASTER']}" in status
    assert "master running" in status and "worker running" in status
    # The lake on S3Proxy, durable: the raw and invalid topics keep a week, not everything.
    endpoint = cluster_stack.config.lake.s3_endpoint
    assert f"s3proxy: running (pid {s3proxy.service().pid()}) on {endpoint}" in status
    assert f"on s3proxy at {endpoint}: durable; the raw and invalid topics keep 7 days" in status
    assert status.count("retention 7 days") == 2, status
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
    # Fenced after 2 s (broker.session.timeout.ms): 120 answers at 500 events/s span 6 s, most of them without it.
    traffic.answered(120)
    cluster_stack.cli("release", victim.name)
    traffic.answered(40)  # while it starts again
    traffic.stop()
    # The catching up is the brokers' own work: it runs without load (under it, 20k more events on two cores).
    back_after = wait_until(lambda: victim.service().pid() is not None and kafka.under_replicated() == 0, 180)
    # Then, in sync again, traffic goes to every broker as before.
    after = Traffic(cluster_stack.deployment(), rate=500).start(seed=15).answered(40).stop()
    everything = traffic.accepted | after.accepted

    landed = lake_ids(LAKE_PREFIX, everything, timeout_s=240)
    report(
        "cluster: one of three brokers SIGKILL, 15 s down",
        {
            **lake_figures(traffic, landed),
            "accepted_once_in_sync": len(after.accepted),
            "longest_wait_s": round(max(traffic.longest_wait_s, after.longest_wait_s), 1),
            "in_sync_again_after_release_s": back_after and round(back_after, 1),
        },
    )
    assert set(traffic.statuses) == set(after.statuses) == {200}, (traffic.statuses, after.statuses)
    assert back_after is not None, "the broker did not rejoin the ISR"
    assert landed == Counter(dict.fromkeys(everything, 1))


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
    landed = lake_after(
        traffic, "cluster: Spark worker SIGKILL, 10 s down", killed,
        batches_again_after_release_s=recovered and round(recovered, 1),
    )  # fmt: skip
    assert recovered is not None, "no batch ran after the worker came back"
    assert spark.service().pid() == driver  # the job itself went on: it was not restarted
    assert set(traffic.statuses) == {200}
    assert landed == Counter(dict.fromkeys(traffic.accepted, 1))


def test_make_up_refuses_a_store_that_does_not_answer_refuses_the_keys_or_lacks_the_bucket(
    cluster_stack: Stack,
) -> None:
    """`make up` readies the lake's store before anything else: a bad one stops it with what to do, and the running
    stack is left as it was. (An S3 of the user's: LAKE_S3_ENDPOINT, here the cluster's S3Proxy or nothing.)"""
    own_s3 = {"LAKE_STORE": "localstack", "LAKE_S3_ENDPOINT": cluster_stack.config.lake.s3_endpoint}
    cases = {
        "does not answer": {"LAKE_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"},
        "refuses bucket": {**own_s3, "AWS_SECRET_ACCESS_KEY": "not-the-key"},
        "has no bucket no-such-lake": {**own_s3, "LAKE_BUCKET": "no-such-lake"},
    }
    for said, variables in cases.items():
        with pytest.raises(StackError, match=said):
            Stack(cluster_stack.name, cluster_stack.runtime, {**cluster_stack.env, **variables}, True).cli("up")
    assert all(cluster_stack.alive().values()), cluster_stack.alive()
    assert "on s3proxy at" in cluster_stack.cli("status").stdout  # the recorded choice is untouched


def test_localstack_killed_the_lake_on_the_store_stays_readable_and_whole_without_a_rebuild(
    cluster_stack: Stack,
) -> None:
    deployment = cluster_stack.deployment()
    url, writer = deployment["api_url"], spark.service().pid()
    before = Traffic(deployment, rate=200, threads=2).start(seed=21).answered(30)
    before.stop()
    assert lake_ids(LAKE_PREFIX, before.accepted) == Counter(dict.fromkeys(before.accepted, 1))
    held = len(committed_ids(LAKE_PREFIX))

    kill_group(localstack.service().pid())
    killed = time.monotonic()
    # Read all along, while LocalStack is gone and while it comes back: the lake answers, whole, every time.
    reads: list[int] = []
    answering = None
    while answering is None and time.monotonic() - killed < 300:
        reads.append(len(committed_ids(LAKE_PREFIX)))
        try:
            if requests.get(f"{url}/ping", timeout=5).status_code == 200:
                answering = time.monotonic() - killed
        except requests.RequestException:
            time.sleep(1)
    after = Traffic(deployment, rate=200, threads=2).start(seed=22).answered(30)
    after.stop()
    everything = before.accepted | after.accepted
    landed = lake_ids(LAKE_PREFIX, everything, timeout_s=240)
    report(
        "store: LocalStack SIGKILL, the lake on S3Proxy",
        {
            "api_answering_again_after_s": answering and round(answering, 1),
            "lake_whole_after_s": round(time.monotonic() - killed, 1),
            "lake_reads_while_away": len(reads),
            **lake_figures(after, landed),
        },
    )
    assert answering is not None, "the API did not answer again"
    assert reads and min(reads) >= held, reads
    assert spark.service().pid() == writer  # no rebuild: the lake writer went on, on the same checkpoint
    assert set(after.statuses) == {200}, after.statuses
    assert landed == Counter(dict.fromkeys(everything, 1))


def test_s3proxy_killed_under_load_comes_back_by_itself_and_the_lake_holds_each_once(cluster_stack: Stack) -> None:
    traffic = Traffic(cluster_stack.deployment(), rate=200, threads=2).start(seed=23).answered(20)
    victim = s3proxy.service().pid()
    kill_group(victim)
    killed = time.monotonic()
    back = wait_until(lambda: s3proxy.service().pid() not in (None, victim), 120, every_s=0.2)
    traffic.answered(40)
    landed = lake_after(
        traffic, "store: S3Proxy SIGKILL under 200 events/s", killed, store_back_after_s=back and round(back, 1)
    )
    assert back is not None, "the supervisor did not bring S3Proxy back"
    assert set(traffic.statuses) == {200}, traffic.statuses
    assert landed == Counter(dict.fromkeys(traffic.accepted, 1))


def test_make_down_and_make_up_on_an_evolved_schema_keep_the_lake_and_the_writer_resumes_from_its_checkpoint(
    cluster_stack: Stack, tmp_path: Path
) -> None:
    """The last of the module: `make down`, then `make up` from a shell that no longer names the store, with the lake
    writer on SchemaVer 1-1-0 of the event schema (one optional field more), as an upgrade deploys it: the table
    gains the column, nothing is rewritten."""
    config = cluster_stack.config
    held = Counter(committed_ids(LAKE_PREFIX))
    # The latest topic as of every raw record published: the last test's traffic may still be in a batch of it.
    raw = kafka.topic_counts(config)[config.kafka.raw_topic]
    caught_up = lambda: spark.progress().get("latest", {}).get("offsets", 0) >= raw  # noqa: E731
    assert wait_until(caught_up, 120) is not None, (raw, spark.progress().get("latest"))
    latest = kafka.topic_counts(config)[config.kafka.latest_topic]
    batches = {name: figures["batch"] for name, figures in spark.progress().items()}
    cluster_stack.cli("down")
    assert not any(cluster_stack.alive().values())
    schema = json.loads((REPO / "schemas" / "acme.clickstream.raw.events.json").read_text())
    schema["properties"]["event"]["properties"]["coupon"] = {"type": ["string", "null"], "maxLength": 64}
    evolved = tmp_path / "acme.clickstream.raw.events-1-1-0.json"
    evolved.write_text(json.dumps(schema))
    upgraded = {**cluster_stack.env, "LAKE_EVENT_SCHEMA": str(evolved)}
    started = time.monotonic()
    Stack(cluster_stack.name, cluster_stack.runtime, upgraded, True).cli("up", unset=("LAKE_STORE", "LAKE_S3_ENDPOINT"))
    up_s = time.monotonic() - started
    assert s3proxy.service().pid() is not None  # the recorded choice: S3Proxy, not LocalStack's S3
    assert Counter(committed_ids(LAKE_PREFIX)) == held  # the lake as it was, at once
    events = synthetic_events(100, seed=24)
    answer = requests.post(f"{chalice_local.url(config)}/collect", json=events, timeout=60)
    assert answer.status_code == 200, answer.text
    sent = {e["id"] for e in events} - {e["id"] for e in answer.json()["errors"]}
    coupons = publish_with_a_coupon(config, answer.json()["correlation_id"], count=10)
    landed = lake_ids(LAKE_PREFIX, sent | coupons | set(held), timeout_s=240)
    # The job resumed from its checkpoint: its batches go on from where they were, and the latest topic holds the
    # new events once, nothing of before again.
    published = lambda: kafka.topic_counts(config)[config.kafka.latest_topic]  # noqa: E731
    assert wait_until(lambda: published() >= latest + len(sent | coupons), 120) is not None, (latest, published())
    # A query's progress reaches the status file a moment after its batch committed.
    went_on = lambda: all(spark.progress().get(q, {}).get("batch", -1) > batches[q] for q in ("lake", "latest"))  # noqa: E731
    resumed = wait_until(went_on, 60)
    after = {name: figures["batch"] for name, figures in spark.progress().items()}
    report("store: make down, make up", {"up_s": round(up_s, 1), "batches_before": batches, "batches_after": after})
    assert landed == Counter(dict.fromkeys(sent | coupons | set(held), 1))
    assert resumed is not None, (batches, after)
    assert published() == latest + len(sent | coupons)
    rows = {r["id"]: r for r in read(LAKE_PREFIX, columns=["id", "coupon", "schema_version"]).to_pylist()}
    assert {rows[i]["coupon"] for i in coupons} == {"WINTER"}
    assert {rows[i]["schema_version"] for i in coupons} == {"1-1-0"}
    assert {rows[i]["coupon"] for i in sent | set(held)} == {None}  # old rows read null: nothing was rewritten


def publish_with_a_coupon(config: Config, correlation_id: str, count: int) -> set[str]:
    """Records of SchemaVer 1-1-0, published by another producer of the raw topic: the collector's record of a batch
    (`correlation_id`), re-keyed, with the new field. Their ids."""
    from kafka import KafkaProducer

    [record] = read_topic(
        config.kafka.bootstrap_servers, config.kafka.raw_topic, {"correlation_id": correlation_id}, 1
    )[:1]
    template = record_json(record.value)
    ids = {f"{template['id']}-1-1-0-{n}" for n in range(count)}
    producer = KafkaProducer(bootstrap_servers=config.kafka.servers, acks="all")
    try:
        for event_id in ids:
            value = {**template, "id": event_id, "event": {**template["event"], "coupon": "WINTER"}}
            value["collector"] = {**template["collector"], "schema_version": "1-1-0"}
            producer.send(config.kafka.raw_topic, key=event_id.encode(), value=json.dumps(value).encode())
        producer.flush()
    finally:
        producer.close()
    return ids


def test_a_clusters_runtime_refuses_to_be_started_as_one_node_and_says_how(cluster_stack: Stack) -> None:
    """`CLUSTER=0 make up` over the cluster's runtime: refused before anything starts or stops (one node could take
    no write to topics of replication 3 and min.insync.replicas 2)."""
    one = {
        "CLUSTER": "0",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "KAFKA_SASL_SSL_PORT": str(free_port()),
    }
    before = cluster_stack.alive()
    with pytest.raises(StackError, match=r"is a cluster of 3 nodes; 1 cannot serve its topics .*`CLUSTER=1 make up`"):
        Stack(cluster_stack.name, cluster_stack.runtime, {**cluster_stack.env, **one}, True).cli("up")
    assert cluster_stack.alive() == before
