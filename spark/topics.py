"""The lake writer's Kafka: the source's and the sink's client options, and reading a topic as a stream."""

from __future__ import annotations

import json

from pyspark.sql import DataFrame, SparkSession

from pipeline.config import Config
from pipeline.config_sections import KafkaConfig


def kafka_options(kafka: KafkaConfig) -> dict[str, str]:
    """The Java client's options for what KAFKA_SECURITY_PROTOCOL asks (KafkaConfig.security): the servers, and with
    SASL the mechanism, user and password (KAFKA_SASL_USERNAME/PASSWORD, from the configuration a parent handed over:
    a password on a command line is visible to every process) and the CA as a PEM truststore."""
    options = {"kafka.bootstrap.servers": kafka.bootstrap_servers}
    security = kafka.security()
    if security.plaintext:
        return options
    options["kafka.security.protocol"] = security.protocol
    if security.cafile:
        options.update({"kafka.ssl.truststore.type": "PEM", "kafka.ssl.truststore.location": security.cafile})
    if security.mechanism:
        if not security.password or not (security.mechanism.startswith("SCRAM-") or security.mechanism == "PLAIN"):
            raise ValueError(f"the lake writer speaks SASL SCRAM and PLAIN, not {security.mechanism}")
        module = "scram.ScramLoginModule" if security.mechanism.startswith("SCRAM-") else "plain.PlainLoginModule"
        username, password = json.dumps(kafka.sasl_username), json.dumps(kafka.sasl_password)
        options["kafka.sasl.mechanism"] = security.mechanism
        options["kafka.sasl.jaas.config"] = (
            f"org.apache.kafka.common.security.{module} required username={username} password={password};"
        )
    return options


def read_topic(spark: SparkSession, config: Config, topic: str) -> DataFrame:
    """`topic` as a stream: from its first offset for a new checkpoint, bounded per micro-batch."""
    return (
        spark.readStream.format("kafka")
        .options(**kafka_options(config.kafka))
        .option("subscribe", topic)
        .option("startingOffsets", config.spark.starting_offsets)
        .option("failOnDataLoss", str(config.spark.fail_on_data_loss).lower())
        .option("maxOffsetsPerTrigger", str(config.spark.max_offsets_per_trigger))
        # A task's consumer waited out the broker's fetch.max.wait.ms (500 ms) at its range's end, as in the
        # read log of SPARK-44012 ("read 1 records, taking 504554479 nanos"): measured, half a second of every
        # latest batch and of each of a table batch's six reads. The broker now answers within 20 ms.
        .option("kafka.fetch.max.wait.ms", "20")
        .load()
    )
