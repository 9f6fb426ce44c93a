"""Apache Kafka, embedded: jars from Maven Central, KRaft nodes started with `java` (one, or three with CLUSTER=1),
the pipeline's topics.

The version is pinned in kafka/pom.xml; `mvn` copies the broker's runtime classpath into the cache once.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template

from chalicelib.settings import Settings, host_port
from stack import kafka_security
from stack.paths import REPO, cache_dir, runtime_dir
from stack.process import Service, ServiceError, port_open, wait_for_port

KAFKA_DIR = REPO / "kafka"
POM = KAFKA_DIR / "pom.xml"


def version() -> str:
    match = re.search(r"<kafka.version>([^<]+)</kafka.version>", POM.read_text())
    assert match, f"no <kafka.version> in {POM}"
    return match.group(1)


def libs_dir() -> Path:
    return cache_dir() / f"kafka-{version()}" / "libs"


def java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    return str(Path(java_home) / "bin" / "java") if java_home else "java"


def fetch_jars() -> Path:
    """Resolve the broker's classpath with mvn into the cache, once per pom.xml content."""
    libs = libs_dir()
    stamp = libs / ".pom-sha256"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return libs
    print(f"kafka: resolving Apache Kafka {version()} from Maven Central into {libs}", flush=True)
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    subprocess.run(
        [
            "mvn",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging}",
        ],
        check=True,
    )
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    stamp.write_text(digest)
    return libs


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


def _ports(variable: str, default: str, count: int) -> list[int]:
    """A port per node from `variable` (comma-separated)."""
    ports = [int(p) for p in (os.environ.get(variable) or default).split(",") if p.strip()]
    if len(ports) != count:
        raise ServiceError(
            f"kafka: {count} address(es) in KAFKA_BOOTSTRAP_SERVERS but {len(ports)} port(s) in {variable}: the "
            "embedded stack runs one node per address and needs one port each"
        )
    return ports


def nodes(settings: Settings | None = None) -> list[Node]:
    """The embedded stack's nodes: one per address of KAFKA_BOOTSTRAP_SERVERS (the PLAINTEXT listener), each with
    its controller port from KAFKA_CONTROLLER_PORT and its SASL_SSL port from KAFKA_SASL_SSL_PORT (as many,
    comma-separated)."""
    settings = settings or Settings.from_env()
    servers = [host_port(server) for server in settings.kafka_servers]
    controllers = _ports("KAFKA_CONTROLLER_PORT", "9093", len(servers))
    sasl = _ports("KAFKA_SASL_SSL_PORT", "9094", len(servers))
    ports = zip(servers, controllers, sasl, strict=True)
    return [
        Node(i, host, port, controller, sasl_port) for i, ((host, port), controller, sasl_port) in enumerate(ports, 1)
    ]


def sasl_ssl_servers(settings: Settings | None = None) -> str:
    """The embedded brokers' SASL_SSL listeners, as KAFKA_BOOTSTRAP_SERVERS for a client that uses them."""
    return ",".join(f"{n.host}:{n.sasl_port}" for n in nodes(settings))


def replication(count: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of `count` nodes: 3 and 2 from three nodes on."""
    replicas = min(count, 3)
    return replicas, 2 if replicas >= 3 else 1


def service() -> Service:
    """The first node's service (the only one unless CLUSTER=1)."""
    return nodes()[0].service()


def _write_config(node: Node, all_nodes: list[Node], settings: Settings) -> None:
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
        partitions=settings.topic_partitions,
        replicas=replicas,
        min_isr=min_isr,
    )
    node.folder.mkdir(parents=True, exist_ok=True)
    node.config.write_text(text)


def _format_storage(node: Node, all_nodes: list[Node], classpath: str) -> None:
    """Format KRaft storage the first time only: the data folder then survives restarts."""
    if (node.data_dir / "meta.properties").exists():
        return
    # Every node of a cluster carries the same cluster id.
    cluster_id = next(filter(None, (_formatted_cluster_id(n) for n in all_nodes)), None) or _cluster_id()
    standalone = ["--standalone"] if len(all_nodes) == 1 else []
    subprocess.run(
        [
            java(),
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


def start(settings: Settings | None = None, timeout_s: float = 60.0, only: str | None = None) -> None:
    """Start every node that is not running (or only the one named), wait for their ports, create the topics."""
    settings = settings or Settings.from_env()
    all_nodes = nodes(settings)
    chosen = [n for n in all_nodes if only in (None, n.name)]
    classpath = str(fetch_jars() / "*")
    heap = os.environ.get("KAFKA_HEAP_OPTS") or "-Xms256m -Xmx512m"
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
        _write_config(node, all_nodes, settings)
        _format_storage(node, all_nodes, classpath)
        log4j = f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}"
        svc.start([java(), *heap.split(), "-XX:+UseG1GC", log4j, "-cp", classpath, "kafka.Kafka", str(node.config)])
    for node in chosen:
        svc = node.service()
        if not wait_for_port(node.host, node.port, timeout_s, alive=lambda svc=svc: svc.pid() is not None):
            raise ServiceError(
                f"kafka: {node.name} did not open {node.host}:{node.port}; last log lines:\n{svc.log_tail()}"
            )
    create_topics(settings)
    kafka_security.ensure_scram_user(settings)
    where = ", ".join(f"{n.host}:{n.port}, SASL_SSL {n.sasl_port} (pid {n.service().pid()})" for n in chosen)
    print(
        f"kafka: {version()} up on {where} in {time.monotonic() - started:.1f}s, data under {runtime_dir()}",
        flush=True,
    )


def create_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create the pipeline's topics that do not exist yet, with the configured partition count."""
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=settings.kafka_servers,
                request_timeout_ms=10000,
                client_id="clickstream-stack",
            )
            break
        except KafkaError:
            # The port opens a moment before the broker answers metadata requests.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    kept = dict.fromkeys((settings.raw_topic, settings.invalid_topic), topic_retention())
    try:
        existing = set(admin.list_topics())
        missing = [t for t in settings.topics if t not in existing]
        if missing:
            try:
                replicas, min_isr = replication(len(settings.kafka_servers))
                admin.create_topics(
                    [
                        NewTopic(
                            t,
                            settings.topic_partitions,
                            replicas,
                            topic_configs={"min.insync.replicas": str(min_isr), **_retention_config(kept.get(t))},
                        )
                        for t in missing
                    ]
                )
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


def topic_retention() -> str:
    """retention.ms of the raw and invalid topics: -1 (forever) by default.

    LocalStack's S3 forgets the lake when it restarts, and the lake writer rebuilds the lake from these topics
    (stack/supervisor.py restarts it on a fresh checkpoint); a record dropped by retention could not come back.
    With a durable S3 (AWS, MinIO), a finite KAFKA_RETENTION_MS is safe once the lake holds the records.
    """
    return os.environ.get("KAFKA_RETENTION_MS") or "-1"


def _retention_config(retention_ms: str | None) -> dict[str, str]:
    return {} if retention_ms is None else {"retention.ms": retention_ms}


def delete_topics(topics: list[str]) -> None:
    from kafka.admin import KafkaAdminClient

    settings = Settings.from_env()
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers, client_id="clickstream-stack")
    try:
        admin.delete_topics(topics)
    finally:
        admin.close()


def topic_counts(settings: Settings) -> dict[str, int]:
    """How many records each pipeline topic holds (sum of its partitions' end offsets)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_servers, group_id=None)
    try:
        counts = {}
        for topic in settings.topics:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            counts[topic] = sum(consumer.end_offsets(partitions).values()) if partitions else 0
        return counts
    finally:
        consumer.close()


def stop() -> None:
    for node in reversed(nodes()):
        if node.service().stop(timeout_s=30):
            print(f"{node.name}: stopped", flush=True)


def under_replicated(settings: Settings) -> int:
    """Partitions of the pipeline's topics with fewer in-sync replicas than replicas."""
    from kafka.admin import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_servers, client_id="clickstream-stack")
    try:
        described = admin.describe_topics(list(settings.topics))
    finally:
        admin.close()
    return sum(len(p["isr_nodes"]) < len(p["replica_nodes"]) for topic in described for p in topic["partitions"])


def status() -> str:
    settings = Settings.from_env()
    all_nodes = nodes(settings)
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
        counts = ", ".join(f"{topic} {n}" for topic, n in topic_counts(settings).items())
        if len(all_nodes) > 1:
            replicas, min_isr = replication(len(all_nodes))
            lagging = under_replicated(settings)
            line += f"; replication {replicas}, min.insync {min_isr}, under-replicated partitions {lagging}"
        return f"{line}; records: {counts}"
    except Exception as exc:  # a cluster without quorum answers nothing: say so instead of failing status
        return f"{line}; topics unreadable ({type(exc).__name__}: {exc})"
