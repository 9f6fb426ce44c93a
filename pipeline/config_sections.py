"""The sections of the configuration tree (pipeline/config.py) for the pipeline's stages, each setting with its
variable, default and meaning (pipeline/config_stack.py has those of the stack around it).

A default left empty with a `shown` text follows another setting; pipeline.config makes it concrete when it reads
the tree. This module and pipeline/config_stack.py are the one place a default is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline import contract


@dataclass(frozen=True)
class Variable:
    """A setting's environment variable, its default (as text) and what it means, for README's table."""

    name: str
    default: str
    doc: str
    #: README's default column where the default follows another setting.
    shown: str = ""
    #: The only values allowed (matched without regard to case), if any.
    choices: tuple[str, ...] = ()


def var(name: str, default: str, doc: str, shown: str = "", choices: tuple[str, ...] = ()) -> Any:
    return field(metadata={"variable": Variable(name, default, doc, shown, choices)})


@dataclass(frozen=True)
class KafkaConfig:
    """the broker, the pipeline's topics and how clients reach them"""

    bootstrap_servers: str = var(
        "KAFKA_BOOTSTRAP_SERVERS",
        "127.0.0.1:9092",
        "where the collector and the lake writer reach Kafka, and where `make up` starts its nodes (one per address)",
        shown="`127.0.0.1:9092` (`…:9092,…:9192,…:9292` with `CLUSTER=1`)",
    )
    raw_topic: str = var("KAFKA_RAW_TOPIC", contract.RAW_TOPIC, "valid events")
    invalid_topic: str = var("KAFKA_INVALID_TOPIC", contract.INVALID_TOPIC, "invalid events and refused requests")
    latest_topic: str = var("KAFKA_LATEST_TOPIC", contract.LATEST_TOPIC, "the lake writer's copy of processed events")
    forgotten_topic: str = var(
        "KAFKA_FORGOTTEN_TOPIC",
        contract.FORGOTTEN_TOPIC,
        "the customers `make forget` forgot (compacted, kept forever): the lake writer drops their events",
    )
    topic_partitions: int = var("KAFKA_TOPIC_PARTITIONS", "6", "partitions of each topic `make up` creates")
    retention_ms: str = var(
        "KAFKA_RETENTION_MS",
        "",
        "retention of the raw and invalid topics `make up` creates (or updates): forever while the lake is on "
        "LocalStack's S3, which is rebuilt from them after a LocalStack restart; a week on a durable store",
        shown="`-1` (forever); `604800000` (7 days) on a durable store",
    )
    send_timeout_s: float = var(
        "KAFKA_SEND_TIMEOUT_S", "10", "how long a batch may wait for Kafka before the collector answers 503 (or spools)"
    )
    linger_ms: int = var("KAFKA_LINGER_MS", "5", "producer linger: lets one batch travel in few requests")
    cooldown_s: float = var(
        "KAFKA_COOLDOWN_S", "5", "after Kafka failed a batch, how long later batches go straight to the spool"
    )
    security_protocol: str = var(
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        "`SASL_SSL`: the collector and the lake writer reach Kafka over TLS with SASL (see *Kafka over SASL_SSL*)",
        choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
    )
    sasl_mechanism: str = var(
        "KAFKA_SASL_MECHANISM",
        "SCRAM-SHA-512",
        "the SASL mechanism (the collector also takes `SCRAM-SHA-256`, `PLAIN` and MSK's `AWS_MSK_IAM`; the lake "
        "writer SCRAM and PLAIN)",
        choices=("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN", "AWS_MSK_IAM"),
    )
    sasl_username: str = var("KAFKA_SASL_USERNAME", "", "the SASL user, when no secret is named")
    sasl_password: str = var(
        "KAFKA_SASL_PASSWORD", "", "its password (local development; a deployed collector reads the secret)"
    )
    sasl_secret_arn: str = var(
        "KAFKA_SASL_SECRET_ARN",
        "",
        'a Secrets Manager secret `{"username", "password"}` (MSK\'s shape) the collector reads once per cold start, '
        "and `make up` reads for the lake writer",
    )
    ssl_cafile: str = var(
        "KAFKA_SSL_CAFILE",
        "",
        "the PEM CA that signed the brokers' certificates (the embedded broker's: `.runtime/kafka-tls/ca.pem`); "
        "empty: the system's CAs",
    )
    controller_ports: tuple[str, ...] = var(
        "KAFKA_CONTROLLER_PORT",
        "9093",
        "the KRaft controller port of each node `make up` starts, one per address of `KAFKA_BOOTSTRAP_SERVERS`",
        shown="`9093` (`9093,9193,9293` with `CLUSTER=1`)",
    )
    sasl_ssl_ports: tuple[str, ...] = var(
        "KAFKA_SASL_SSL_PORT",
        "9094",
        "the SASL_SSL listener's port of each node `make up` starts",
        shown="`9094` (`9094,9194,9294` with `CLUSTER=1`)",
    )
    heap_opts: str = var("KAFKA_HEAP_OPTS", "-Xms256m -Xmx512m", "the embedded broker's JVM heap")
    jvm_options: str = var("KAFKA_JVM_OPTIONS", "-XX:+UseG1GC", "the embedded broker's other JVM options")

    @property
    def servers(self) -> list[str]:
        """KAFKA_BOOTSTRAP_SERVERS as the list Kafka clients take."""
        return [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()]

    @property
    def topics(self) -> tuple[str, str, str]:
        """Every topic of the pipeline."""
        return (self.raw_topic, self.invalid_topic, self.latest_topic)

    def security(self) -> KafkaSecurity:
        """What KAFKA_SECURITY_PROTOCOL asks of a client, whatever its language: each client maps it to its own
        settings (the collector's kafka-python, the lake writer's Java client)."""
        protocol = self.security_protocol
        tls = protocol in ("SSL", "SASL_SSL")
        sasl = protocol.startswith("SASL_")
        return KafkaSecurity(
            protocol=protocol,
            cafile=self.ssl_cafile if tls and self.ssl_cafile else None,
            mechanism=self.sasl_mechanism if sasl else None,
            # MSK's IAM signs with the client's AWS role instead of a user and password.
            password=sasl and self.sasl_mechanism != "AWS_MSK_IAM",
        )


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client connects: the protocol, the PEM CA to trust (None: the system's), the SASL mechanism (None: no
    SASL) and whether it signs in with a user and password."""

    protocol: str
    cafile: str | None
    mechanism: str | None
    password: bool

    @property
    def plaintext(self) -> bool:
        return self.protocol == "PLAINTEXT"


@dataclass(frozen=True)
class CollectorConfig:
    """the collector (`chalice local` and the Lambda): limits, the spool, write keys, rate limits, CORS"""

    port: int = var("COLLECTOR_PORT", "60000", "`chalice local`'s port under `make up` / `make local` (the seed's)")
    spool: str = var(
        "COLLECTOR_SPOOL",
        "",
        "`sqs`: a batch Kafka does not take within `KAFKA_SEND_TIMEOUT_S` is spooled and answered 202 (the "
        "`localstack` and `bench` stages set it); empty: 503",
        choices=("", "sqs"),
    )
    spool_queue: str = var(
        "SPOOL_QUEUE",
        "acme-clickstream-spool",
        "the spool's SQS queue (`make deploy` creates it; the drainer reads it)",
    )
    spool_bucket: str = var(
        "SPOOL_BUCKET",
        "acme-clickstream-spool",
        "where spooled batches over 200 KiB wait, their message pointing there",
    )
    max_body_bytes: int = var("COLLECTOR_MAX_BODY_BYTES", "10485760", "body limit (API Gateway's 10 MB)")
    max_batch_events: int = var("COLLECTOR_MAX_BATCH_EVENTS", "1000", "events per request (the seed sends 987)")
    max_event_bytes: int = var("COLLECTOR_MAX_EVENT_BYTES", "32768", "one event's serialised size")
    rejected_body_bytes: int = var(
        "COLLECTOR_REJECTED_BODY_BYTES", "8192", "how much of a refused body the invalid topic keeps"
    )
    earliest_event_time: str = var(
        "COLLECTOR_EARLIEST_EVENT_TIME",
        "2000-01-01T00:00:00Z",
        "events whose `event.timestamp` is earlier are invalid (a wrong client clock)",
    )
    max_clock_ahead_s: float = var(
        "COLLECTOR_MAX_CLOCK_AHEAD_S", "86400", "events more than this many seconds ahead of the clock are invalid"
    )
    cors_allowed_origins: tuple[str, ...] = var(
        "CORS_ALLOWED_ORIGINS",
        ",".join(contract.SHOP_ORIGINS),
        "comma-separated, or `*`: the shop served locally and from its S3 website",
    )
    require_write_key: bool = var(
        "REQUIRE_WRITE_KEY", "true", "`false` lets any request write (the `dev` stage of `chalice local` sets it)"
    )
    write_keys_parameter: str = var(
        "WRITE_KEYS_PARAMETER",
        "/acme/clickstream/write-keys",
        "the SSM parameter of the write keys (the bench stage has its own)",
    )
    write_keys_cache_s: float = var(
        "WRITE_KEYS_CACHE_S", "60", "how long a collector process keeps the keys: a revoked key works at most this long"
    )
    rate_limit_events_per_s: float = var(
        "RATE_LIMIT_EVENTS_PER_S", "10000", "each key's events per second per collector process (0: unlimited)"
    )
    rate_limit_burst_s: float = var("RATE_LIMIT_BURST_S", "2", "bursts of up to this many seconds' worth of the rate")
    log_level: str = var(
        "LOG_LEVEL", "INFO", "the collector's log level", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    )


@dataclass(frozen=True)
class LakeConfig:
    """the lake's Delta tables on S3 and how the lake writer fills them"""

    bucket: str = var("LAKE_BUCKET", contract.LAKE_BUCKET, "the lake's bucket (`make up` creates it)")
    events_path: str = var("LAKE_PATH", "", "the events' Delta table", shown="`s3a://<LAKE_BUCKET>/clickstream-data`")
    invalid_path: str = var(
        "LAKE_INVALID_PATH", "", "the invalid rows' Delta table", shown="`s3a://<LAKE_BUCKET>/clickstream-invalid`"
    )
    sessions_path: str = var(
        "LAKE_SESSIONS_PATH", "", "the sessions' Delta table", shown="`s3a://<LAKE_BUCKET>/clickstream-sessions`"
    )
    store: str = var(
        "LAKE_STORE",
        "localstack",
        "the S3 the lake lives on: `localstack` (its S3 forgets everything on a restart: the lake is rebuilt from "
        "Kafka) or `s3proxy` (S3Proxy on a folder of the runtime, which `make up` runs: the lake outlives restarts); "
        "`make up` records the choice",
        choices=contract.LAKE_STORES,
    )
    s3_endpoint: str = var(
        "LAKE_S3_ENDPOINT",
        "",
        "the lake's S3 for the lake writer and the readers: where S3Proxy listens, or a store of your own (MinIO, "
        "AWS), which makes the lake durable as S3Proxy does",
        shown="`AWS_ENDPOINT_URL`'s (LocalStack); `http://127.0.0.1:8333` with `s3proxy`",
    )
    commit_interval: str = var(
        "LAKE_COMMIT_INTERVAL",
        "20 seconds",
        "how often the lake's Delta tables commit (fresher rows against fewer, larger files)",
    )
    dedupe_window: str = var(
        "LAKE_DEDUPE_WINDOW",
        "1 hour",
        "how long the lake's queries remember an id as it arrives: a resend within it is dropped at once (at least "
        "this long, at most twice); an older one when its day is swept (see *The lake*)",
    )
    enrichment: bool = var(
        "LAKE_ENRICHMENT",
        "on",
        "`off`: rows as collected, without the enrichment's columns and with IPs as sent (to measure its cost, on a "
        "table of its own)",
    )
    ip_mode: str = var(
        "IP_MODE",
        "truncate",
        "how the lake keeps client IPs: `truncate` (IPv4 /24, IPv6 /48), `full`, or `drop`",
        choices=contract.IP_MODES,
    )
    event_schema: str = var(
        "LAKE_EVENT_SCHEMA",
        "",
        "the JSON Schema the lake writer derives the table's columns from",
        shown=f"`{contract.EVENT_SCHEMA_FILE}`",
    )

    def path(self, table: str) -> str:
        """Where a lake table lives (contract.LAKE_TABLES), as s3a://bucket/key."""
        return getattr(self, contract.LAKE_TABLE_FIELDS[table])


@dataclass(frozen=True)
class SessionsConfig:
    """the sessions table the lake writer keeps up from the events table"""

    enabled: bool = var(
        "LAKE_SESSIONS", "on", "`off`: the sessions table is created but not kept up (also off with enrichment off)"
    )
    gap_minutes: float = var(
        "SESSION_GAP_MINUTES", "30", "a customer's next event after this much silence starts a new session"
    )
    interval_s: float = var(
        "SESSIONS_INTERVAL_S",
        "30",
        "the pause after each round of recomputing the sessions of customers with new events",
    )


@dataclass(frozen=True)
class MaintenanceConfig:
    """the tables' sweep of repeated ids, compaction and vacuum, run by the lake writer between its commits"""

    compact_interval_s: float = var(
        "LAKE_COMPACT_INTERVAL_S",
        "600",
        "how often each table compacts (OPTIMIZE) the days it wrote into, and sweeps the closed ones of repeated ids",
    )
    vacuum_interval_s: float = var(
        "LAKE_VACUUM_INTERVAL_S", "86400", "how often each table vacuums files older than a week"
    )
    request_file: str = var(
        "LAKE_MAINTENANCE_REQUEST",
        "",
        "the file `make compact` and `make forget` write to ask the running lake writer (`make up` sets it; empty: "
        "none)",
    )
    vacuum_retain_hours: int = var(
        "LAKE_VACUUM_RETAIN_HOURS",
        "168",
        "how long a file the tables no longer name is kept before a vacuum deletes it: how far back time travel "
        "reaches, and how long a forgotten customer's rows stay in storage after `make forget`",
    )


@dataclass(frozen=True)
class SparkConfig:
    """the lake writer's Spark: its queries, and the local or standalone cluster it runs on"""

    master: str = var(
        "SPARK_MASTER",
        "local[*]",
        "the master `make up` submits the lake writer to",
        shown="`local[*]` (`spark://127.0.0.1:7077` with `CLUSTER=1`)",
    )
    checkpoint: str = var(
        "SPARK_CHECKPOINT", "", "the queries' checkpoints", shown="`s3a://<LAKE_BUCKET>/_checkpoints/lake-writer`"
    )
    latest_checkpoint: str = var(
        "SPARK_LATEST_CHECKPOINT",
        "",
        "the latest topic's query's checkpoint (its offsets and dedupe state): `make up` keeps it on local disk, in "
        "the runtime folder, since each of its commits cost ~0.4 s on the lake's S3; empty: beside the others",
        shown="`<SPARK_CHECKPOINT>/latest`",
    )
    trigger: str = var("SPARK_TRIGGER", "1 second", "the latest topic's micro-batch interval")
    dedupe_window: str = var(
        "SPARK_DEDUPE_WINDOW",
        "1 hour",
        "how long the latest topic remembers an event id (on Kafka's time); the lake remembers every id",
    )
    starting_offsets: str = var(
        "SPARK_STARTING_OFFSETS", "earliest", "where a new checkpoint starts reading", choices=("earliest", "latest")
    )
    fail_on_data_loss: bool = var(
        "SPARK_FAIL_ON_DATA_LOSS", "true", "stop (true) or skip (false) when unread offsets are gone"
    )
    max_offsets_per_trigger: int = var(
        "SPARK_MAX_OFFSETS_PER_TRIGGER",
        "300000",
        "the most records one batch takes: a table commit every 20 s keeps up with 15,000 events/s; raise it with"
        " LAKE_COMMIT_INTERVAL",
    )
    status_file: str = var(
        "SPARK_STATUS_FILE",
        "",
        "where the lake writer keeps each query's state and last progress (`make up` sets it; empty: none)",
    )
    ui_port: int = var("SPARK_UI_PORT", "4040", "the lake writer's Spark UI")
    driver_memory: str = var("SPARK_DRIVER_MEMORY", "1g", "the driver's heap")
    java_options: str = var(
        "SPARK_JAVA_OPTIONS",
        "-XX:+UseSerialGC -XX:CompileThresholdScaling=3",
        "the JVM options of the lake writer's driver and executors. The default: a small heap needs no concurrent "
        "collector, and the JIT compiles only code that stays hot (each micro-batch plans anew); together 14% less "
        "of the writer's CPU for the same traffic, measured",
    )
    shuffle_partitions: int = var(
        "SPARK_SHUFFLE_PARTITIONS",
        "2",
        "partitions of the queries' state, one task each per micro-batch (fixed when a checkpoint is made): one per "
        "core of a laptop; more for a cluster",
    )
    executor_memory: str = var("SPARK_EXECUTOR_MEMORY", "1g", "the lake writer's executor heap on the cluster")
    cores_max: int = var("SPARK_CORES_MAX", "2", "cores the lake writer takes of the cluster")
    master_webui_port: int = var(
        "SPARK_MASTER_WEBUI_PORT", "18080", "the standalone master's UI (Spark's variable; the seed's port)"
    )
    worker_webui_port: int = var("SPARK_WORKER_WEBUI_PORT", "28081", "the worker's UI (Spark's variable; the seed's)")
    worker_cores: int = var("SPARK_WORKER_CORES", "2", "cores the standalone worker offers")
    worker_memory: str = var("SPARK_WORKER_MEMORY", "2g", "memory the standalone worker offers")
