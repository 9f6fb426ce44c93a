"""The pipeline's reference configuration: every shared setting, its environment variable and its default.

This is the one place these defaults live. The collector reads them through `Settings`; the other stages
(the stack scripts, Spark, the generator, the tests) import them from here instead of repeating them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

WEBSITE_BUCKET = "acme-clickstream-shop"

#: Environment variable -> default. README's configuration table lists the same names (a test checks).
DEFAULTS: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "KAFKA_RAW_TOPIC": "acme.clickstream.raw.events",
    "KAFKA_INVALID_TOPIC": "acme.clickstream.invalid.events",
    "KAFKA_LATEST_TOPIC": "acme.clickstream.latest.events",
    "KAFKA_TOPIC_PARTITIONS": "6",
    # How long a batch may wait for Kafka (metadata, acks) before the collector answers 503.
    "KAFKA_SEND_TIMEOUT_S": "10",
    # How clients reach Kafka: PLAINTEXT (the embedded broker's default listener), or SASL_SSL with a SASL
    # mechanism, its user and password (or a Secrets Manager secret holding both, as MSK keeps them) and the CA
    # that signed the brokers' certificates (empty: the system's CAs, as for MSK).
    "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "",
    "KAFKA_SASL_PASSWORD": "",
    "KAFKA_SASL_SECRET_ARN": "",
    "KAFKA_SSL_CAFILE": "",
    # A little lingering lets one batch travel in few produce requests.
    "KAFKA_LINGER_MS": "5",
    # After Kafka failed a batch, how long later batches go straight to the spool (when there is one).
    "KAFKA_COOLDOWN_S": "5",
    # Where a batch waits while Kafka does not take it: "sqs" (the deployed stages), or "" for none (503).
    "COLLECTOR_SPOOL": "",
    "SPOOL_QUEUE": "acme-clickstream-spool",
    # Batches too large for an SQS message (256 KiB) wait here, their message pointing to them.
    "SPOOL_BUCKET": "acme-clickstream-spool",
    # API Gateway's payload limit; inside Lambda the 6 MB invoke limit applies first.
    "COLLECTOR_MAX_BODY_BYTES": str(10 * 1024 * 1024),
    # The seed's generator sends batches of 987.
    "COLLECTOR_MAX_BATCH_EVENTS": "1000",
    "COLLECTOR_MAX_EVENT_BYTES": str(32 * 1024),
    # How much of a rejected request body is kept in the invalid topic.
    "COLLECTOR_REJECTED_BODY_BYTES": str(8 * 1024),
    # The window of event times accepted: a client clock before this instant, or this far ahead, is wrong.
    "COLLECTOR_EARLIEST_EVENT_TIME": "2000-01-01T00:00:00Z",
    "COLLECTOR_MAX_CLOCK_AHEAD_S": "86400",
    # Comma-separated origins allowed by CORS, or "*": the shop served locally and from the S3 website.
    "CORS_ALLOWED_ORIGINS": ",".join(
        [
            "http://localhost:8000",
            "http://127.0.0.1:8000",
            f"http://{WEBSITE_BUCKET}.s3-website.localhost.localstack.cloud:4566",
        ]
    ),
    # Whether POST /collect needs a write key (chalicelib/write_keys.py): on unless a stage turns it off
    # explicitly (`chalice local`'s dev stage does).
    "REQUIRE_WRITE_KEY": "true",
    # The SSM parameter holding the write keys, and how long a collector process keeps them (a revoked key
    # works at most this long).
    "WRITE_KEYS_PARAMETER": "/acme/clickstream/write-keys",
    "WRITE_KEYS_CACHE_S": "60",
    # Each key's events per second (a key's own events_per_s overrides it; 0: unlimited), per collector
    # process, in bursts of up to this many seconds' worth.
    "RATE_LIMIT_EVENTS_PER_S": "10000",
    "RATE_LIMIT_BURST_S": "2",
    "LOG_LEVEL": "INFO",
    # `chalice local`'s port (the seed's), where the generator and the shop served locally send by default.
    "COLLECTOR_PORT": "60000",
    # The Parquet lake (Spark writes it) and the shop's S3 website.
    "LAKE_BUCKET": "acme.eu-west-1.stg.data.lake",
    "WEBSITE_BUCKET": WEBSITE_BUCKET,
}


def setting(name: str, environ: Mapping[str, str] | None = None) -> str:
    """One setting: its environment variable if set and not empty, else its default."""
    env = os.environ if environ is None else environ
    return env.get(name) or DEFAULTS[name]


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str
    raw_topic: str
    invalid_topic: str
    latest_topic: str
    topic_partitions: int
    kafka_send_timeout_s: float
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: str
    kafka_sasl_secret_arn: str
    kafka_ssl_cafile: str
    kafka_linger_ms: int
    kafka_cooldown_s: float
    spool: str
    spool_queue: str
    spool_bucket: str
    max_body_bytes: int
    max_batch_events: int
    max_event_bytes: int
    rejected_body_bytes: int
    earliest_event_time: str
    max_clock_ahead_s: float
    cors_allowed_origins: tuple[str, ...]
    require_write_key: bool
    write_keys_parameter: str
    write_keys_cache_s: float
    rate_limit_events_per_s: float
    rate_limit_burst_s: float
    log_level: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        def get(name: str) -> str:
            return setting(name, environ)

        return cls(
            kafka_bootstrap_servers=get("KAFKA_BOOTSTRAP_SERVERS"),
            raw_topic=get("KAFKA_RAW_TOPIC"),
            invalid_topic=get("KAFKA_INVALID_TOPIC"),
            latest_topic=get("KAFKA_LATEST_TOPIC"),
            topic_partitions=int(get("KAFKA_TOPIC_PARTITIONS")),
            kafka_send_timeout_s=float(get("KAFKA_SEND_TIMEOUT_S")),
            kafka_security_protocol=get("KAFKA_SECURITY_PROTOCOL").strip().upper(),
            kafka_sasl_mechanism=get("KAFKA_SASL_MECHANISM").strip().upper(),
            kafka_sasl_username=get("KAFKA_SASL_USERNAME"),
            kafka_sasl_password=get("KAFKA_SASL_PASSWORD"),
            kafka_sasl_secret_arn=get("KAFKA_SASL_SECRET_ARN"),
            kafka_ssl_cafile=get("KAFKA_SSL_CAFILE"),
            kafka_linger_ms=int(get("KAFKA_LINGER_MS")),
            kafka_cooldown_s=float(get("KAFKA_COOLDOWN_S")),
            spool=get("COLLECTOR_SPOOL").strip().lower(),
            spool_queue=get("SPOOL_QUEUE"),
            spool_bucket=get("SPOOL_BUCKET"),
            max_body_bytes=int(get("COLLECTOR_MAX_BODY_BYTES")),
            max_batch_events=int(get("COLLECTOR_MAX_BATCH_EVENTS")),
            max_event_bytes=int(get("COLLECTOR_MAX_EVENT_BYTES")),
            rejected_body_bytes=int(get("COLLECTOR_REJECTED_BODY_BYTES")),
            earliest_event_time=get("COLLECTOR_EARLIEST_EVENT_TIME"),
            max_clock_ahead_s=float(get("COLLECTOR_MAX_CLOCK_AHEAD_S")),
            cors_allowed_origins=tuple(o.strip() for o in get("CORS_ALLOWED_ORIGINS").split(",") if o.strip()),
            require_write_key=get("REQUIRE_WRITE_KEY").strip().lower() not in ("false", "0", "no", "off"),
            write_keys_parameter=get("WRITE_KEYS_PARAMETER"),
            write_keys_cache_s=float(get("WRITE_KEYS_CACHE_S")),
            rate_limit_events_per_s=float(get("RATE_LIMIT_EVENTS_PER_S")),
            rate_limit_burst_s=float(get("RATE_LIMIT_BURST_S")),
            log_level=get("LOG_LEVEL").upper(),
        )

    @property
    def kafka_servers(self) -> list[str]:
        """KAFKA_BOOTSTRAP_SERVERS as the list Kafka clients take."""
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    @property
    def topics(self) -> tuple[str, ...]:
        """Every topic the pipeline uses, as the broker script creates them."""
        return (self.raw_topic, self.invalid_topic, self.latest_topic)


#: The lake's tables (prefixes of the lake bucket by default) and the variables that move them elsewhere.
LAKE_TABLES = {
    "clickstream-data": "LAKE_PATH",
    "clickstream-invalid": "LAKE_INVALID_PATH",
    "clickstream-sessions": "LAKE_SESSIONS_PATH",
}


def lake_url(table: str, environ: Mapping[str, str] | None = None) -> str:
    """Where a lake table lives, as s3a://bucket/key: its variable, else s3a://<LAKE_BUCKET>/<table>."""
    env = os.environ if environ is None else environ
    return (env.get(LAKE_TABLES[table]) or f"s3a://{setting('LAKE_BUCKET', env)}/{table}").rstrip("/")


#: The region of the deployed resources and buckets (AWS_DEFAULT_REGION's default).
REGION = "eu-west-1"


def host_port(address: str) -> tuple[str, int]:
    """host and port of "host:port" (IPv6 in brackets too); an empty host is 127.0.0.1."""
    host, _, port = address.strip().rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def gateway_listen(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """Where LocalStack listens: the first address of GATEWAY_LISTEN (LocalStack's variable; 127.0.0.1:4566)."""
    env = os.environ if environ is None else environ
    host, port = host_port((env.get("GATEWAY_LISTEN") or "127.0.0.1:4566").split(",")[0])
    return (host if host not in ("0.0.0.0", "::") else "127.0.0.1"), port


def gateway_url(environ: Mapping[str, str] | None = None) -> str:
    """LocalStack's URL, from GATEWAY_LISTEN."""
    host, port = gateway_listen(environ)
    return f"http://{host}:{port}"


def aws_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What AWS clients (boto3, chalice, awslocal, s3a, pyarrow) need to reach the stack's AWS: LocalStack unless
    AWS_ENDPOINT_URL says otherwise. The credentials are LocalStack's local-dev defaults, used only when unset."""
    env = os.environ if environ is None else environ
    return {
        "AWS_ENDPOINT_URL": env.get("AWS_ENDPOINT_URL") or gateway_url(env),
        "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID") or "test",
        "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY") or "test",
        "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION") or REGION,
    }


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (a warm Lambda keeps them)."""
    return Settings.from_env()
