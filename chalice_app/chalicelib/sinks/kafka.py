"""The Kafka sink: one producer per process, created on first use and kept while it works."""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from chalicelib.sinks import Delivery, Record, SinkUnavailable
from pipeline.config_sections import KafkaConfig
from pipeline.contract import host_port

log = logging.getLogger(__name__)


class _SaslRefusals(logging.Handler):
    """kafka-python logs why a broker refused the SASL handshake but raises only "Unable to bootstrap": the last
    such reason, so a wrong password is named as one."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "SaslAuthenticationFailedError: " in message:
            reason = message.rsplit("SaslAuthenticationFailedError: ", 1)[-1]
            self._last = re.sub(r"\s*\(backoff [^)]*\)\s*$", "", reason).strip()

    def take(self) -> str | None:
        last, self._last = self._last, None
        return last


_sasl_refusals = _SaslRefusals()
logging.getLogger("kafka.net").addHandler(_sasl_refusals)


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash (org.apache.kafka.common.utils.Utils.murmur2), as an unsigned 32-bit int.

    The same partitions as Java clients and kafka-python's default partitioner, at half the cost of the
    latter's byte-by-byte loop: with a thousand records per request, partitioning was a quarter of the
    producer's time.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    words = length >> 2
    for k in struct.unpack_from(f"<{words}I", data):
        k = (k * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    rest = length & 3
    if rest:
        tail = data[words << 2 :]
        if rest == 3:
            h ^= tail[2] << 16
        if rest >= 2:
            h ^= tail[1] << 8
        h = ((h ^ tail[0]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for `key` among `partitions`."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


#: Where SASL credentials come from: KAFKA_SASL_SECRET_ARN's secret, else KAFKA_SASL_USERNAME/PASSWORD.
Credentials = Callable[[], tuple[str, str]]


def sasl_credentials(kafka: KafkaConfig, aws_client: Callable[[str], Any]) -> Credentials:
    """A loader of the SASL user and password: from Secrets Manager when KAFKA_SASL_SECRET_ARN names a secret
    (MSK's shape, {"username", "password"}), else the settings' own. Raises SinkUnavailable if it cannot be read."""

    def load() -> tuple[str, str]:
        if not kafka.sasl_secret_arn:
            return kafka.sasl_username, kafka.sasl_password
        try:
            answer = aws_client("secretsmanager").get_secret_value(SecretId=kafka.sasl_secret_arn)
            secret = json.loads(answer["SecretString"])
            return secret["username"], secret["password"]
        except Exception as exc:  # boto3's errors, a secret of another shape
            raise SinkUnavailable(f"the Kafka secret {kafka.sasl_secret_arn} cannot be read: {exc}") from exc

    return load


def security_config(kafka: KafkaConfig, credentials: Credentials | None = None) -> dict[str, Any]:
    """kafka-python's settings for what KAFKA_SECURITY_PROTOCOL asks (KafkaConfig.security): nothing for PLAINTEXT;
    the CA to trust, and the SASL mechanism with `credentials`' user and password, otherwise."""
    security = kafka.security()
    if security.plaintext:
        return {}
    config: dict[str, Any] = {"security_protocol": security.protocol}
    if security.cafile:
        config["ssl_cafile"] = security.cafile
    if security.mechanism:
        config["sasl_mechanism"] = security.mechanism
    if security.password:
        username, password = (credentials or sasl_credentials(kafka, _no_aws))()
        config.update(sasl_plain_username=username, sasl_plain_password=password)
    return config


def _no_aws(name: str) -> Any:
    raise SinkUnavailable(f"KAFKA_SASL_SECRET_ARN is set but no AWS client was given to read it ({name})")


def producer_config(kafka: KafkaConfig, credentials: Credentials | None = None) -> dict[str, Any]:
    """The producer's settings; the benchmark's raw producer uses the same ones."""
    timeout_ms = int(kafka.send_timeout_s * 1000)
    return {
        **security_config(kafka, credentials),
        "bootstrap_servers": kafka.servers,
        # Only what every in-sync replica has is acknowledged, and retries never duplicate a record.
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": kafka.linger_ms,
        "batch_size": 256 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        # Bounded waits, so a dead broker turns into a 503 well within API Gateway's 29 s.
        "bootstrap_timeout_ms": timeout_ms,
        "max_block_ms": timeout_ms,
        "delivery_timeout_ms": timeout_ms,
        "request_timeout_ms": min(timeout_ms - kafka.linger_ms, 5000),
        "client_id": "clickstream-collector",
    }


class KafkaSink:
    """Records to Kafka with one producer, made on first use; `credentials` load the SASL user when the settings
    ask for SASL (read when the producer is made: once per cold start, again after a failure)."""

    def __init__(self, kafka: KafkaConfig, credentials: Credentials | None = None) -> None:
        self._kafka = kafka
        self._credentials = credentials
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()

    def _get_producer(self) -> KafkaProducer:
        with self._lock:
            if self._producer is None:
                self._producer = KafkaProducer(**producer_config(self._kafka, self._credentials))
            return self._producer

    def _discard_producer(self) -> None:
        # After a failed delivery the idempotent producer's sequence state is suspect: start afresh.
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception:  # closing a broken producer must not hide the original error
                log.exception("closing the Kafka producer failed")

    def publish(self, records: Sequence[Record]) -> Delivery:
        """Send every record, flush once, and raise SinkUnavailable unless Kafka acknowledged them all."""
        if not records:
            return Delivery.STORED
        try:
            producer = self._get_producer()
            counts = {topic: len(producer.partitions_for(topic)) for topic in {r.topic for r in records}}
            futures = [
                producer.send(
                    r.topic,
                    key=r.key,
                    value=r.value,
                    # Keyed records are partitioned here, as the default partitioner would, but cheaper.
                    partition=None if r.key is None else partition_for(r.key, counts[r.topic]),
                )
                for r in records
            ]
            producer.flush(timeout=self._kafka.send_timeout_s)
        except (KafkaError, OSError) as exc:
            self._discard_producer()
            servers = self._kafka.bootstrap_servers
            refusal = _sasl_refusals.take()
            if refusal:
                raise SinkUnavailable(f"Kafka at {servers} refused the SASL credentials: {refusal}") from exc
            protocol = self._kafka.security_protocol
            if protocol.startswith("SASL_") and "bootstrap" in str(exc) and self.reachable():
                # The broker can close a refused handshake before its answer arrives; the port answering
                # while no connection is made leaves the handshake as the cause.
                raise SinkUnavailable(
                    f"Kafka at {servers} answers but no {protocol} connection was made ({exc!r}): its SASL handshake "
                    "failed; check the SASL credentials and the CA"
                ) from exc
            raise SinkUnavailable(f"Kafka at {servers} did not take the batch: {exc!r}") from exc
        failed = [f for f in futures if not f.succeeded()]
        if failed:
            self._discard_producer()
            raise SinkUnavailable(
                f"Kafka did not acknowledge {len(failed)} of {len(records)} records: {failed[0].exception!r}"
            )
        return Delivery.STORED

    def reachable(self) -> bool:
        """Whether a bootstrap server accepts a TCP connection (cheap: no producer is created)."""
        for server in self._kafka.servers:
            try:
                with socket.create_connection(host_port(server), timeout=1.0):
                    return True
            except OSError:
                continue
        return False
