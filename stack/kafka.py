"""Apache Kafka, embedded: jars from Maven Central, KRaft nodes started with `java` (one, or three with CLUSTER=1),
the pipeline's topics.

The version is pinned in kafka/pom.xml; `mvn` copies the broker's runtime classpath into the cache once.
"""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from string import Template

from pipeline.config import Config
from pipeline.contract import host_port
from stack import kafka_security, maven
from stack.class_archives import ClassArchive
from stack.cluster import current
from stack.paths import REPO, cache_dir, runtime_dir
from stack.process import Service, ServiceError, port_open, wait_for_port

log = logging.getLogger(__name__)
KAFKA_DIR = REPO / "kafka"
POM = KAFKA_DIR / "pom.xml"


def version() -> str:
    return maven.pinned(POM, "kafka.version")


def libs_dir() -> Path:
    return cache_dir() / f"kafka-{version()}" / "libs"


def fetch_jars() -> Path:
    """The broker's classpath, resolved with mvn into the cache once per pom.xml content."""
    return maven.fetch_classpath(POM, libs_dir(), f"kafka: Apache Kafka {version()}")


def class_archive(config: Config) -> ClassArchive:
    return ClassArchive("kafka-node", "kafka.Kafka", maven.java(config), (str(libs_dir() / "*"),))


@dataclass(frozen=True)
class Node:
    """One Kafka node of the embedded stack (broker and KRaft controller in one process)."""

    node_id: int
    host: str
    port: int
    controller_port: int
    #: The SASL_SSL listener's port (stack/kafka_security.py).
    sasl_port: int

    @property
    def name(self) -> str:
        return "kafka" if self.node_id == 1 else f"kafka-{self.node_id}"

    @property
    def folder(self) -> Path:
        return runtime_dir() / self.name

    @property
    def config(self) -> Path:
        return self.folder / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def service(self) -> Service:
        return Service(self.name, runtime_dir(), marker=f"kafka.Kafka {self.config}")


def _ports(values: tuple[str, ...], variable: str, count: int) -> list[int]:
    """A port per node from a comma-separated setting."""
    ports = [int(p) for p in values]
    if len(ports) != count:
        raise ServiceError(
            f"kafka: {count} address(es) in KAFKA_BOOTSTRAP_SERVERS but {len(ports)} port(s) in {variable}: the "
            "embedded stack runs one node per address and needs one port each"
        )
    return ports


def nodes(config: Config | None = None) -> list[Node]:
    """The embedded stack's nodes: one per address of KAFKA_BOOTSTRAP_SERVERS (the PLAINTEXT listener), each with
    its controller port from KAFKA_CONTROLLER_PORT and its SASL_SSL port from KAFKA_SASL_SSL_PORT (as many,
    comma-separated)."""
    kafka = (config or current()).kafka
    servers = [host_port(server) for server in kafka.servers]
    controllers = _ports(kafka.controller_ports, "KAFKA_CONTROLLER_PORT", len(servers))
    sasl = _ports(kafka.sasl_ssl_ports, "KAFKA_SASL_SSL_PORT", len(servers))
    ports = zip(servers, controllers, sasl, strict=True)
    return [
        Node(i, host, port, controller, sasl_port) for i, ((host, port), controller, sasl_port) in enumerate(ports, 1)
    ]


def sasl_ssl_servers(config: Config | None = None) -> str:
    """The embedded brokers' SASL_SSL listeners, as KAFKA_BOOTSTRAP_SERVERS for a client that uses them."""
    return ",".join(f"{n.host}:{n.sasl_port}" for n in nodes(config))


def replication(count: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `count` nodes: 3 and 2 from three nodes on."""
    replicas = min(count, 3)
    return replicas, 2 if replicas >= 3 else 1


def formatted_nodes() -> int:
    """How many nodes this runtime's Kafka data was formatted for (0: none yet, a fresh runtime)."""
    return len(list(runtime_dir().glob("kafka*/data/meta.properties")))


def check_shape(config: Config) -> None:
    """Refuse, saying how to go on, to start Kafka in another shape than its data was formatted in: the topics would
    keep the replication they were made with while the stack claimed another."""
    formatted, wanted = formatted_nodes(), len(nodes(config))
    if not formatted or formatted == wanted:
        return
    where = runtime_dir()
    if formatted < wanted:
        raise ServiceError(
            f"kafka: the Kafka of {where} is {formatted} node; CLUSTER=1 wants {wanted}, formatted together, and this "
            f"one's quorum and topics are not grown in place (its topics would keep {formatted} replica). Keep one "
            "node: `CLUSTER=0 make up`; or run the cluster in a runtime folder of its own: "
            "`CLICKSTREAM_RUNTIME=.runtime-cluster CLUSTER=1 make up`"
        )
    raise ServiceError(
        f"kafka: the Kafka of {where} is a cluster of {formatted} nodes; {wanted} cannot serve its topics "
        f"(replication {replication(formatted)[0]}, min.insync.replicas {replication(formatted)[1]}: writes would be "
        "refused). Start the cluster: `CLUSTER=1 make up`; or one node in a runtime folder of its own: "
        "`CLICKSTREAM_RUNTIME=.runtime-single CLUSTER=0 make up`"
    )


def service() -> Service:
    """The first node's service (the only one unless CLUSTER=1)."""
    return nodes()[0].service()


def _write_config(node: Node, all_nodes: list[Node], config: Config) -> None:
    if len(all_nodes) == 1:
        # One node bootstraps its quorum dynamically (formatted --standalone), as Kafka's quickstart does.
        quorum = f"controller.quorum.bootstrap.servers={node.host}:{node.controller_port}"
    else:
        quorum = "controller.quorum.voters=" + ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in all_nodes)
    replicas, min_isr = replication(len(all_nodes))
    tls = kafka_security.ensure_tls()
    text = Template((KAFKA_DIR / "server.properties").read_text()).substitute(
        node_id=node.node_id,
        quorum=quorum,
        host=node.host,
        port=node.port,
        controller_port=node.controller_port,
        sasl_port=node.sasl_port,
        keystore=tls.keystore,
        keystore_password=tls.keystore_password,
        log_dirs=node.data_dir,
        partitions=config.kafka.topic_partitions,
        replicas=replicas,
        min_isr=min_isr,
    )
    node.folder.mkdir(parents=True, exist_ok=True)
    node.config.write_text(text)


def _format_storage(node: Node, all_nodes: list[Node], classpath: str, config: Config) -> None:
    """Format KRaft storage the first time only: the data folder then survives restarts."""
    if (node.data_dir / "meta.properties").exists():
        return
    # Every node of a cluster carries the same cluster id.
    cluster_id = next(filter(None, (_formatted_cluster_id(n) for n in all_nodes)), None) or _cluster_id()
    standalone = ["--standalone"] if len(all_nodes) == 1 else []
    subprocess.run(
        [
            maven.java(config),
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            *standalone,
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(node.config),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _formatted_cluster_id(node: Node) -> str | None:
    try:
        text = (node.data_dir / "meta.properties").read_text()
    except FileNotFoundError:
        return None
    match = re.search(r"^cluster\.id=(\S+)", text, re.MULTILINE)
    return match.group(1) if match else None


def _cluster_id() -> str:
    """A cluster id as Kafka makes them: 16 random bytes in URL-safe base64 without padding.

    Like Kafka's own Uuid.randomUuid(), never one that starts with "-": the storage tool's argument parser
    would take it for an option (one id in 64 would fail to format).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start(config: Config | None = None, timeout_s: float = 60.0, only: str | None = None) -> None:
    """Start every node that is not running (or only the one named), wait for their ports, create the topics."""
    config = config or current()
    all_nodes = nodes(config)
    chosen = [n for n in all_nodes if only in (None, n.name)]
    classpath = str(fetch_jars() / "*")
    heap = config.kafka.heap_opts
    archive = class_archive(config).options()
    started = time.monotonic()
    # All processes first: a node of three opens its port only once a quorum of controllers is up.
    for node in chosen:
        svc = node.service()
        if svc.pid() is not None:
            continue
        for port, variable in ((node.port, "KAFKA_BOOTSTRAP_SERVERS"), (node.sasl_port, "KAFKA_SASL_SSL_PORT")):
            if port_open(node.host, port):
                raise ServiceError(
                    f"kafka: {node.host}:{port} is taken by a process this stack did not start; stop it or set "
                    f"{variable} to another port"
                )
        _write_config(node, all_nodes, config)
        _format_storage(node, all_nodes, classpath, config)
        log4j = f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}"
        svc.start(
            [
                maven.java(config),
                *heap.split(),
                *config.kafka.jvm_options.split(),
                *archive,
                log4j,
                "-cp",
                classpath,
                "kafka.Kafka",
                str(node.config),
            ]
        )
    for node in chosen:
        svc = node.service()
        if not wait_for_port(node.host, node.port, timeout_s, alive=lambda svc=svc: svc.pid() is not None):
            raise ServiceError(
                f"kafka: {node.name} did not open {node.host}:{node.port}; last log lines:\n{svc.log_tail()}"
            )
    create_topics(config)
    kafka_security.ensure_scram_user(config)
    where = ", ".join(f"{n.host}:{n.port}, SASL_SSL {n.sasl_port} (pid {n.service().pid()})" for n in chosen)
    log.info("kafka: %s up on %s in %.1fs, data under %s", version(), where, time.monotonic() - started, runtime_dir())


def create_topics(config: Config, timeout_s: float = 30.0) -> None:
    """Create the pipeline's topics that do not exist yet, with the configured partition count, and the list of the
    forgotten customers."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=config.kafka.servers,
                request_timeout_ms=10000,
                client_id="clickstream-stack",
            )
            break
        except KafkaError:
            # The port opens a moment before the broker answers metadata requests.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    kafka = config.kafka
    kept = dict.fromkeys((kafka.raw_topic, kafka.invalid_topic), kafka.retention_ms)
    try:
        existing = set(admin.list_topics())
        replicas, min_isr = replication(len(kafka.servers))
        new = [
            NewTopic(
                t,
                kafka.topic_partitions,
                replicas,
                topic_configs={"min.insync.replicas": str(min_isr), **_retention_config(kept.get(t))},
            )
            for t in kafka.topics
            if t not in existing
        ]
        if kafka.forgotten_topic not in existing:
            # The customers `make forget` forgot: one partition (a short list, read whole), one record per customer,
            # kept forever.
            compacted = {"min.insync.replicas": str(min_isr), "cleanup.policy": "compact"}
            new.append(NewTopic(kafka.forgotten_topic, 1, replicas, topic_configs=compacted))
        if new:
            try:
                admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass
        present = [t for t in kept if t in existing]
        if present:
            # Topics made by an earlier version (or by hand) get the retention the lake's rebuild relies on.
            admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, t, configs={"retention.ms": kept[t]}) for t in present]
            )
    finally:
        admin.close()


def _retention_config(retention_ms: str | None) -> dict[str, str]:
    return {} if retention_ms is None else {"retention.ms": retention_ms}


def delete_topics(topics: list[str], config: Config | None = None) -> None:
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=(config or current()).kafka.servers, client_id="clickstream-stack")
    try:
        admin.delete_topics(topics)
    finally:
        admin.close()


def topic_counts(config: Config | None = None) -> dict[str, int]:
    """How many records each pipeline topic holds (sum of its partitions' end offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    kafka = (config or current()).kafka
    consumer = KafkaConsumer(bootstrap_servers=kafka.servers, group_id=None)
    try:
        counts = {}
        for topic in kafka.topics:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            counts[topic] = sum(consumer.end_offsets(partitions).values()) if partitions else 0
        return counts
    finally:
        consumer.close()


def stop(config: Config | None = None) -> None:
    """Every node stopped, all at once: each shuts down in order on its own (a node stopped after the others would
    wait on its own for leadership to move to nodes already gone)."""
    every, archive = nodes(config), class_archive(config or current())

    def stopped_node(node: Node) -> bool:
        archive.record(node.service().pid())  # the first time only: the classes of a node that has run
        return node.service().stop(timeout_s=30)

    with ThreadPoolExecutor(max_workers=len(every)) as pool:
        stopped = list(pool.map(stopped_node, every))
    for node, was_running in zip(every, stopped, strict=True):
        if was_running:
            log.info("%s: stopped", node.name)


def under_replicated(config: Config | None = None) -> int:
    """Partitions of the pipeline's topics with fewer in-sync replicas than replicas."""
    return sum(t.under_replicated for t in topic_states(config).values())


#: What `make status` says of a setting a topic does not have of its own.
DEFAULT = "the broker's default"


@dataclass(frozen=True)
class TopicState:
    """A topic as its brokers describe it, not as the node count implies."""

    replicas: int  # the fewest replicas of any partition
    in_sync: int  # the fewest in-sync replicas of any partition
    under_replicated: int  # partitions with fewer in-sync replicas than replicas
    #: The topic's own settings; None where it has none and the broker's default holds.
    min_insync: str | None
    retention_ms: str | None

    def describe(self) -> str:
        if self.retention_ms is None:
            retention = DEFAULT
        else:
            retention = "forever" if self.retention_ms == "-1" else f"{int(self.retention_ms) / 86_400_000:g} days"
        return (
            f"replication {self.replicas} (in sync {self.in_sync}, under-replicated partitions "
            f"{self.under_replicated}), min.insync {self.min_insync or DEFAULT}, retention {retention}"
        )


def topic_states(config: Config | None = None) -> dict[str, TopicState]:
    """Each pipeline topic's replication, in-sync replicas and settings, read from the brokers."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    kafka = (config or current()).kafka
    admin = KafkaAdminClient(bootstrap_servers=kafka.servers, client_id="clickstream-stack")
    try:
        described = {t["name"]: t["partitions"] for t in admin.describe_topics(list(kafka.topics))}
        resources = [ConfigResource(ConfigResourceType.TOPIC, topic) for topic in described]
        settings = admin.describe_configs(resources)["topic"]
    finally:
        admin.close()
    return {
        topic: TopicState(
            replicas=min(len(p["replica_nodes"]) for p in partitions),
            in_sync=min(len(p["isr_nodes"]) for p in partitions),
            under_replicated=sum(len(p["isr_nodes"]) < len(p["replica_nodes"]) for p in partitions),
            # describe_configs answers only the settings a topic has of its own.
            min_insync=settings.get(topic, {}).get("min.insync.replicas", {}).get("value"),
            retention_ms=settings.get(topic, {}).get("retention.ms", {}).get("value"),
        )
        for topic, partitions in described.items()
        if partitions
    }


def status(config: Config | None = None) -> str:
    config = config or current()
    all_nodes = nodes(config)
    states = []
    for node in all_nodes:
        pid = node.service().pid()
        if pid is None:
            states.append(f"{node.name} not running")
        elif not port_open(node.host, node.port):
            states.append(f"{node.name} (pid {pid}) on {node.host}:{node.port} NOT answering")
        else:
            states.append(f"{node.name} (pid {pid}) on {node.host}:{node.port}, SASL_SSL {node.sasl_port}")
    if not any(node.service().pid() for node in all_nodes):
        return "kafka: not running"
    line = "kafka: " + ", ".join(states)
    try:
        states = topic_states(config)
        topics = [f"  {topic}: {n} records, {states[topic].describe()}" for topic, n in topic_counts(config).items()]
        return "\n".join([line, *topics])
    except Exception as exc:  # a cluster without quorum answers nothing: say so instead of failing status
        return f"{line}; topics unreadable ({type(exc).__name__}: {exc})"
