"""Apache Kafka, embedded: jars from Maven Central, one KRaft node started with `java`, the pipeline's topics.

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
from pathlib import Path
from string import Template

from chalicelib.settings import Settings, host_port
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


def _host_port(settings: Settings) -> tuple[str, int]:
    """Where the embedded broker listens: the first bootstrap server."""
    return host_port(settings.kafka_servers[0])


def controller_port() -> int:
    return int(os.environ.get("KAFKA_CONTROLLER_PORT") or "9093")


def data_dir() -> Path:
    return runtime_dir() / "kafka" / "data"


def service() -> Service:
    return Service("kafka", runtime_dir(), marker=f"kafka.Kafka {runtime_dir() / 'kafka'}")


def _write_config(settings: Settings) -> Path:
    host, port = _host_port(settings)
    text = Template((KAFKA_DIR / "server.properties").read_text()).substitute(
        host=host,
        port=port,
        controller_port=controller_port(),
        log_dirs=data_dir(),
        partitions=settings.topic_partitions,
    )
    config = runtime_dir() / "kafka" / "server.properties"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text)
    return config


def _format_storage(config: Path, classpath: str) -> None:
    """Format KRaft storage the first time only: the data folder then survives restarts."""
    if (data_dir() / "meta.properties").exists():
        return
    cluster_id = _cluster_id()
    subprocess.run(
        [
            java(),
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(config),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def _cluster_id() -> str:
    """A cluster id as Kafka makes them: 16 random bytes in URL-safe base64 without padding.

    Like Kafka's own Uuid.randomUuid(), never one that starts with "-": the storage tool's argument parser
    would take it for an option (one id in 64 would fail to format).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start(settings: Settings | None = None, timeout_s: float = 60.0) -> None:
    settings = settings or Settings.from_env()
    host, port = _host_port(settings)
    svc = service()
    if svc.pid() is None and port_open(host, port):
        raise ServiceError(
            f"kafka: {host}:{port} is taken by a process this stack did not start; stop it or set "
            "KAFKA_BOOTSTRAP_SERVERS to another port"
        )
    classpath = str(fetch_jars() / "*")
    config = _write_config(settings)
    _format_storage(config, classpath)
    started = time.monotonic()
    heap = os.environ.get("KAFKA_HEAP_OPTS") or "-Xms256m -Xmx512m"
    svc.start(
        [
            java(),
            *heap.split(),
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(config),
        ],
    )
    if not wait_for_port(host, port, timeout_s, alive=lambda: svc.pid() is not None):
        raise ServiceError(f"kafka: broker did not open {host}:{port}; last log lines:\n{svc.log_tail()}")
    create_topics(settings)
    print(
        f"kafka: broker {version()} up on {host}:{port} in {time.monotonic() - started:.1f}s "
        f"(pid {svc.pid()}, data {data_dir()})",
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
                admin.create_topics(
                    [
                        NewTopic(t, settings.topic_partitions, 1, topic_configs=_retention_config(kept.get(t)))
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
    if service().stop(timeout_s=30):
        print("kafka: stopped", flush=True)


def status() -> str:
    pid = service().pid()
    if pid is None:
        return "kafka: not running"
    settings = Settings.from_env()
    host, port = _host_port(settings)
    if not port_open(host, port):
        return f"kafka: running (pid {pid}) on {host}:{port} but NOT answering; log {service().logfile}"
    counts = ", ".join(f"{topic} {n}" for topic, n in topic_counts(settings).items())
    return f"kafka: running (pid {pid}) on {host}:{port}; records: {counts}"
