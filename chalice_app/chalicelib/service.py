"""The process-wide collector, built on first use and reused while the Lambda stays warm."""

from __future__ import annotations

import logging
from functools import lru_cache

from chalicelib.collector import Collector
from chalicelib.settings import get_settings
from chalicelib.sinks.kafka import KafkaSink


@lru_cache(maxsize=1)
def get_collector() -> Collector:
    settings = get_settings()
    logging.getLogger("chalicelib").setLevel(settings.log_level)
    return Collector(settings, KafkaSink(settings))


def reset() -> None:
    """Forget settings and producer, so the next request reads the environment again (tests use this)."""
    get_collector.cache_clear()
    get_settings.cache_clear()
