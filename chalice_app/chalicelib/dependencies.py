"""The process-wide collector, built on first use and reused while the Lambda stays warm."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from chalicelib.collector import Collector
from chalicelib.drainer import Drainer
from chalicelib.rate_limit import RateLimiter
from chalicelib.sinks import Sink
from chalicelib.sinks.kafka import KafkaSink, sasl_credentials
from chalicelib.sinks.spool import FallbackSink, SqsSpool
from chalicelib.write_keys import WriteKeys
from pipeline.config import Config, load


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


@lru_cache(maxsize=1)
def get_collector() -> Collector:
    config = get_config()
    if not config.collector.require_write_key:
        return Collector(config, build_sink(config))
    write_keys = WriteKeys.from_config(config.collector, lambda: aws_client("ssm"))
    limiter = RateLimiter(config.collector.rate_limit_events_per_s, config.collector.rate_limit_burst_s)
    return Collector(config, build_sink(config), write_keys, limiter)


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
