"""The sections of the configuration tree (pipeline/config.py) around the pipeline: AWS, the embedded stack's services
(the schema registry and the Kafka UI among them), the generator, the bench and the tests. Each setting with its
variable, default and meaning (pipeline/config_sections.py has the pipeline's own stages).
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline import contract
from pipeline.config_sections import var


@dataclass(frozen=True)
class AwsConfig:
    """where AWS clients (boto3, chalice, s3a, delta-rs) reach the stack's AWS: LocalStack unless told otherwise"""

    endpoint_url: str = var(
        "AWS_ENDPOINT_URL", "", "where `make deploy`, `awslocal` and boto3 reach AWS", shown="from `GATEWAY_LISTEN`"
    )
    access_key_id: str = var("AWS_ACCESS_KEY_ID", "test", "local-dev credential, used only when unset")
    secret_access_key: str = var("AWS_SECRET_ACCESS_KEY", "test", "local-dev credential, used only when unset")
    region: str = var("AWS_DEFAULT_REGION", contract.REGION, "region of the deployed resources and buckets")


@dataclass(frozen=True)
class StackConfig:
    """the embedded stack's own services, folders and the deploy"""

    cluster: str = var(
        "CLUSTER",
        "",
        "`1`: `make up` starts three Kafka nodes (replication 3, `min.insync.replicas` 2) and a Spark standalone "
        "master and worker; later commands follow the running stack",
        shown="(the running stack's choice)",
        choices=("", "0", "1"),
    )
    home: str = var(
        "CLICKSTREAM_HOME",
        "",
        "download cache (jars, virtualenvs), shared by checkouts",
        shown="`~/.cache/clickstream`",
    )
    runtime: str = var(
        "CLICKSTREAM_RUNTIME",
        "",
        "PIDs, logs, services' data and the deployment record of this checkout; survives `make down`",
        shown="`.runtime`",
    )
    java_home: str = var("JAVA_HOME", "", "the JVM that runs Kafka and Spark", shown="(the `java` on `PATH`)")
    gateway_listen: str = var(
        "GATEWAY_LISTEN", "127.0.0.1:4566", "where LocalStack listens (LocalStack's own variable)"
    )
    localstack_services: str = var(
        "SERVICES",
        "s3,apigateway,lambda,iam,sts,sqs,ssm,secretsmanager,cloudwatch,logs",
        "LocalStack's services, loaded eagerly (LocalStack's own variable)",
    )
    localstack_start_timeout_s: float = var(
        "LOCALSTACK_START_TIMEOUT", "90", "seconds `make up` waits for LocalStack's health"
    )
    localstack_stop_timeout_s: float = var(
        "LOCALSTACK_STOP_TIMEOUT", "10", "seconds between SIGTERM and SIGKILL on `make down`"
    )
    website_bucket: str = var("WEBSITE_BUCKET", contract.WEBSITE_BUCKET, "the shop's S3 website bucket")


@dataclass(frozen=True)
class RegistryConfig:
    """the schema registry (Confluent's REST API): the one `make up` runs, or any other the pipeline is pointed at"""

    url: str = var(
        "SCHEMA_REGISTRY_URL",
        "",
        "where clients reach the registry",
        shown="`http://127.0.0.1:8085` (the embedded one)",
    )
    host: str = var("SCHEMA_REGISTRY_HOST", "127.0.0.1", "the address the registry `make up` runs listens on")
    port: int = var("SCHEMA_REGISTRY_PORT", "8085", "the port of the registry `make up` runs (the seed's)")
    topic: str = var(
        "SCHEMA_REGISTRY_TOPIC", "_schemas", "the compacted topic the embedded registry keeps every schema in"
    )
    user_info: str = var("SCHEMA_REGISTRY_USER_INFO", "", "`user:password` for a registry that asks (basic auth)")
    wire_format: bool = var(
        "COLLECTOR_WIRE_FORMAT", "on", "`off`: the collector writes plain JSON instead of Confluent's wire format"
    )
    raw_schema_id: int = var(
        "COLLECTOR_REGISTRY_ID",
        "0",
        "the registry's id of the raw topic's schema, which the collector frames its records with; `make deploy` and "
        "`make up` set it; 0: asked of the registry at a cold start (plain JSON while it does not answer)",
    )


@dataclass(frozen=True)
class KafkaUiConfig:
    """the Kafka UIs: kafka-viewer in the browser (`make up`), kaskade in the terminal (`make kafka-tui`)"""

    port: int = var(
        "KAFKA_UI_PORT", "8080", "kafka-viewer's port under `make up` (the seed's Kafka UI's); 0: not started"
    )


@dataclass(frozen=True)
class GeneratorConfig:
    """the traffic generator (`python -m generator`)"""

    write_key: str = var(
        "WRITE_KEY", "", "the source's write key it sends (with `--api-gateway`, the one `make deploy` made for it)"
    )


@dataclass(frozen=True)
class BenchConfig:
    """`make bench`'s volumes"""

    batches: int = var("BENCH_BATCHES", "30", "batches of 987 events per ingest figure")
    seed_events: int = var("BENCH_SEED_EVENTS", "2000", "events sent the seed's way (one round trip each)")
    rows_per_file: int = var(
        "BENCH_ROWS_PER_FILE", "333334", "rows per data file of the aged day of the Delta tables' figures"
    )
    hour_commits: int = var("BENCH_HOUR_COMMITS", "180", "commits of the files-per-day figure")


@dataclass(frozen=True)
class TestsConfig:
    """`make test`'s own knobs"""

    fuzz_requests: int = var(
        "FUZZ_REQUESTS", "1000", "generated requests for `POST /collect` per fuzzed target (at least 1,000)"
    )
