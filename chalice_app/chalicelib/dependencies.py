"""The process-wide collector, built on first use and reused while the Lambda stays warm."""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from chalicelib.collector import Collector
from chalicelib.drainer import Drainer
from chalicelib.rate_limit import RateLimiter
from chalicelib.settings import Settings, get_settings
from chalicelib.sinks import Sink
from chalicelib.sinks.kafka import KafkaSink, sasl_credentials
from chalicelib.sinks.spool import FallbackSink, SqsSpool
from chalicelib.write_keys import WriteKeys


@lru_cache(maxsize=8)
def aws_client(name: str) -> Any:
    """A boto3 client, made once per process (the Lambda runtime provides boto3; AWS_ENDPOINT_URL points it at
    LocalStack there)."""
    import boto3

    return boto3.client(name)


def build_sink(settings: Settings) -> Sink:
    """Kafka, falling back on the spool when one is configured (COLLECTOR_SPOOL=sqs)."""
    kafka = KafkaSink(settings, sasl_credentials(settings, aws_client))
    if settings.spool == "sqs":
        return FallbackSink(kafka, SqsSpool(settings, aws_client), settings.kafka_cooldown_s)
    return kafka


def _logged_settings() -> Settings:
    """The process's settings, with the collector's log level applied."""
    settings = get_settings()
    logging.getLogger("chalicelib").setLevel(settings.log_level)
    return settings


@lru_cache(maxsize=1)
def get_collector() -> Collector:
    settings = _logged_settings()
    if not settings.require_write_key:
        return Collector(settings, build_sink(settings))
    write_keys = WriteKeys.from_settings(settings, lambda: aws_client("ssm"))
    limiter = RateLimiter(settings.rate_limit_events_per_s, settings.rate_limit_burst_s)
    return Collector(settings, build_sink(settings), write_keys, limiter)


@lru_cache(maxsize=1)
def get_drainer() -> Drainer:
    settings = _logged_settings()
    return Drainer(KafkaSink(settings, sasl_credentials(settings, aws_client)), aws_client)


def reset() -> None:
    """Forget settings, clients and producer, so the next request reads the environment again (tests use this)."""
    get_collector.cache_clear()
    get_drainer.cache_clear()
    get_settings.cache_clear()
    aws_client.cache_clear()
