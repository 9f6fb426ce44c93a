"""The process-wide collector, built on first use and reused while the Lambda stays warm."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from typing import Any

from chalicelib.collector import Collector
from chalicelib.drainer import Drainer
from chalicelib.rate_limit import RateLimiter
from chalicelib.sinks import Sink
from chalicelib.sinks.kafka import KafkaSink, sasl_credentials
from chalicelib.sinks.spool import FallbackSink, SqsSpool
from chalicelib.validation import SCHEMA
from chalicelib.write_keys import WriteKeys
from pipeline.config import Config, load
from pipeline.schema_registry import RegistryClient, RegistryError, RegistryUnreachable, raw_value_schema, value_subject

log = logging.getLogger(__name__)


@lru_cache(maxsize=8)
def aws_client(name: str) -> Any:
    """A boto3 client, made once per process (the Lambda runtime provides boto3; AWS_ENDPOINT_URL points it at
    LocalStack there)."""
    import boto3

    return boto3.client(name)


def build_sink(config: Config) -> Sink:
    """Kafka, falling back on the spool when one is configured (COLLECTOR_SPOOL=sqs)."""
    kafka = KafkaSink(config.kafka, sasl_credentials(config.kafka, aws_client))
    if config.collector.spool == "sqs":
        return FallbackSink(kafka, SqsSpool(config.collector, aws_client), config.kafka.cooldown_s)
    return kafka


@lru_cache(maxsize=1)
def get_config() -> Config:
    """The process's configuration, read once (a warm Lambda keeps it), with the collector's log level applied."""
    config = load()
    logging.getLogger("chalicelib").setLevel(config.collector.log_level)
    return config


def registry_id(config: Config) -> int | None:
    """The registry's id of the raw topic's schema, which raw records are framed with: the one `make deploy` set,
    else the registry's answer at this cold start; None (plain JSON) when the wire format is off, or the registry
    does not answer or know the schema: a registry outage never fails a request."""
    registry = config.registry
    if not registry.wire_format:
        return None
    if registry.raw_schema_id:
        return registry.raw_schema_id
    client = RegistryClient(registry.url, timeout_s=2.0, user_info=registry.user_info)
    try:
        found = client.lookup(value_subject(config.kafka.raw_topic), json.dumps(raw_value_schema(SCHEMA)), "JSON")
    except (RegistryError, RegistryUnreachable) as exc:
        log.warning("raw records in plain JSON: the schema registry's id is unknown (%s)", exc)
        return None
    if found is None:
        log.warning("raw records in plain JSON: the registry at %s does not have the event's schema", registry.url)
    return found


@lru_cache(maxsize=1)
def get_collector() -> Collector:
    config = get_config()
    schema_id = registry_id(config)
    if not config.collector.require_write_key:
        return Collector(config, build_sink(config), registry_id=schema_id)
    write_keys = WriteKeys.from_config(config.collector, lambda: aws_client("ssm"))
    limiter = RateLimiter(config.collector.rate_limit_events_per_s, config.collector.rate_limit_burst_s)
    return Collector(config, build_sink(config), write_keys, limiter, schema_id)


@lru_cache(maxsize=1)
def get_drainer() -> Drainer:
    kafka = get_config().kafka
    return Drainer(KafkaSink(kafka, sasl_credentials(kafka, aws_client)), aws_client)


def reset() -> None:
    """Forget the configuration, clients and producer, so the next request reads the environment again (tests)."""
    get_collector.cache_clear()
    get_drainer.cache_clear()
    get_config.cache_clear()
    aws_client.cache_clear()
