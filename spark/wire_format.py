"""Confluent's wire format on the raw topic: each record's schema id and payload (a record without the header is
plain JSON, as older collectors wrote), and whether the schema registry knows the id as a version of the raw topic's
subject, as the seed's job resolves it. Spark columns over pure functions; the registry is asked once per id and
worker, its answers kept."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipeline.config import Config
from pipeline.schema_registry import HEADER_BYTES, MAGIC_BYTE, RegistryClient, RegistryUnreachable, value_subject

#: How long a batch waits for a registry that does not answer before the query fails (and is restarted).
UNREACHABLE_WAIT_S = 120.0
#: How long an id the registry did not know stays unknown before it is asked again (it may be registered since).
UNKNOWN_KEPT_S = 30.0

Answer = TypeVar("Answer")
_answers: dict[tuple[str, str, int], tuple[bool, float]] = {}


def has_magic_byte(value: Column) -> Column:
    return F.substring(value, 1, 1) == F.unhex(F.lit(f"{MAGIC_BYTE:02x}"))


def cut_short(value: Column) -> Column:
    """A record that begins with the magic byte but is too short to hold a schema id."""
    return has_magic_byte(value) & (F.length(value) < HEADER_BYTES)


def _framed(value: Column) -> Column:
    return has_magic_byte(value) & (F.length(value) >= HEADER_BYTES)


def schema_id(value: Column) -> Column:
    """The record's schema id (a 4-byte big-endian integer after the magic byte), null for plain JSON."""
    return F.when(_framed(value), F.conv(F.hex(F.substring(value, 2, 4)), 16, 10).cast(T.LongType()))


def payload(value: Column) -> Column:
    """What follows the header, or the whole value of a plain record."""
    return F.when(_framed(value), value.substr(F.lit(HEADER_BYTES + 1), F.length(value))).otherwise(value)


def patiently(call: Callable[[], Answer]) -> Answer:
    """`call`'s answer, asked again every second while the registry does not answer, up to UNREACHABLE_WAIT_S."""
    deadline = time.monotonic() + UNREACHABLE_WAIT_S
    while True:
        try:
            return call()
        except RegistryUnreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def knows(client: RegistryClient, subject: str, schema: int) -> bool:
    """Whether the registry has the schema of id `schema` as a version of `subject` (asked once, and again after
    UNKNOWN_KEPT_S for an unknown id); waits up to UNREACHABLE_WAIT_S for a registry that does not answer."""
    key = (client.url, subject, schema)
    known, expires = _answers.get(key, (False, 0.0))
    if known or time.monotonic() < expires:
        return known
    known = subject in patiently(lambda: client.subjects_of(schema))
    _answers[key] = (known, time.monotonic() + UNKNOWN_KEPT_S)
    return known


def known_schema(client: RegistryClient, subject: str) -> Any:
    """An Arrow UDF: for each schema id, whether `subject` has it (null for a null id)."""

    def known(ids: pa.Array) -> pa.Array:
        return pa.array([None if i is None else knows(client, subject, i) for i in ids.to_pylist()], pa.bool_())

    return F.arrow_udf(known, T.BooleanType())


def registry_check(config: Config) -> Any:
    """known_schema for the raw topic's subject in the configured registry."""
    client = RegistryClient(config.registry.url, user_info=config.registry.user_info)
    return known_schema(client, value_subject(config.kafka.raw_topic))
